// oneDNN and loop kernel wrappers.
#include "runtime/kernel.h"

#include <algorithm>
#include <cstdlib>
#include <new>
#include <numeric>
#include <stdexcept>

namespace metagrad {

dnnl::memory::dims to_dims(const Shape& shape) {
  if (shape.empty()) return {1};
  return dnnl::memory::dims(shape.begin(), shape.end());
}

dnnl::memory::desc dense_desc(const Shape& shape, DType dtype) {
  auto dims = to_dims(shape);
  dnnl::memory::dims strides(dims.size());
  int64_t s = 1;
  for (size_t i = dims.size(); i-- > 0;) {
    strides[i] = s;
    s *= dims[i];
  }
  auto dt = dtype == DType::f32 ? dnnl::memory::data_type::f32 : dnnl::memory::data_type::s32;
  return dnnl::memory::desc(dims, dt, strides);
}

dnnl::primitive_attr dnnl_attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

int& foreign_alloc_scope() {
  thread_local int depth = 0;
  return depth;
}

Workspace::~Workspace() { std::free(base_); }

void Workspace::request(size_t bytes, std::function<void(char*)> bind) {
  if (base_) throw std::logic_error("Workspace::request after allocate");
  bytes_ = std::max(bytes_, bytes);
  binds_.push_back(std::move(bind));
}

void Workspace::allocate() {
  if (base_) return;
  base_ = static_cast<char*>(std::aligned_alloc(64, std::max<size_t>(64, (bytes_ + 63) / 64 * 64)));
  if (!base_) throw std::bad_alloc();
  for (auto& b : binds_) b(base_);
  binds_.clear();
}

DnnlKernel::DnnlKernel(dnnl::primitive prim, const dnnl::primitive_desc_base& pd, const std::vector<Arg>& args,
                       const dnnl::engine& engine, Workspace& ws)
    : engine_(engine) {
  add(std::move(prim), pd, args);
  bind(ws);
}

int DnnlKernel::add_temp(const dnnl::memory::desc& desc) {
  temps_.push_back(desc);
  return int(temps_.size()) - 1;
}

void DnnlKernel::add(dnnl::primitive prim, const dnnl::primitive_desc_base& pd, const std::vector<Arg>& args,
                     const std::vector<int>& temps) {
  Step st{std::move(prim), {}, {}, 0, -1};
  size_t next_temp = 0;
  for (const Arg& a : args) {
    if (a.ptr) {
      st.mems.emplace_back(a.desc, engine_, a.ptr);
    } else {
      st.mems.emplace_back(a.desc, engine_, static_cast<void*>(nullptr));
      temp_uses_.push_back({int(steps_.size()), int(st.mems.size()) - 1});
      temp_of_use_.push_back(temps.at(next_temp++));
    }
  }
  auto sp = pd.scratchpad_desc();
  if (sp.get_size() > 0) {
    st.mems.emplace_back(sp, engine_, static_cast<void*>(nullptr));
    st.scratch_bytes = sp.get_size();
    st.scratch_mem = int(st.mems.size()) - 1;
  }
  for (size_t i = 0; i < args.size(); ++i) st.args.push_back({args[i].id, st.mems[i].get()});
  if (st.scratch_mem >= 0) st.args.push_back({DNNL_ARG_SCRATCHPAD, st.mems[size_t(st.scratch_mem)].get()});
  std::string name = pd.impl_info_str();
  impl_ += impl_.empty() ? "onednn:" + name : "+" + name;
  steps_.push_back(std::move(st));
}

void DnnlKernel::bind(Workspace& ws) {
  // Temporaries are laid out one after another; each step's scratchpad follows them.
  std::vector<size_t> temp_offset;
  size_t off = 0;
  for (const auto& d : temps_) {
    temp_offset.push_back(off);
    off += (d.get_size() + 63) / 64 * 64;
  }
  size_t need = off;
  for (const Step& st : steps_) need = std::max(need, off + st.scratch_bytes);
  if (need == 0) return;
  ws.request(need, [this, temp_offset, off](char* base) {
    for (size_t u = 0; u < temp_uses_.size(); ++u) {
      auto [step, mem] = temp_uses_[u];
      steps_[size_t(step)].mems[size_t(mem)].set_data_handle(base + temp_offset[size_t(temp_of_use_[u])]);
    }
    for (Step& st : steps_)
      if (st.scratch_mem >= 0) st.mems[size_t(st.scratch_mem)].set_data_handle(base + off);
  });
}

void DnnlKernel::run(dnnl::stream& stream) {
  ++foreign_alloc_scope();
  for (Step& s : steps_) {
    dnnl_status_t st = dnnl_primitive_execute(s.prim.get(), stream.get(), int(s.args.size()), s.args.data());
    if (st != dnnl_success) {
      --foreign_alloc_scope();
      throw dnnl::error(st, "oneDNN primitive execution failed");
    }
  }
  --foreign_alloc_scope();
}

}  // namespace metagrad

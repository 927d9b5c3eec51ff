// oneDNN and loop kernel wrappers.
#include "runtime/kernel.h"

#include <numeric>

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

DnnlKernel::DnnlKernel(dnnl::primitive prim, const dnnl::primitive_desc_base& pd,
                       const std::vector<Arg>& args, const dnnl::engine& engine)
    : prim_(std::move(prim)), impl_(std::string("onednn:") + pd.impl_info_str()) {
  for (const Arg& a : args) mems_.emplace_back(a.desc, engine, a.ptr);
  auto sp = pd.scratchpad_desc();
  std::vector<int> ids;
  for (const Arg& a : args) ids.push_back(a.id);
  if (sp.get_size() > 0) {
    mems_.emplace_back(sp, engine);  // oneDNN owns this buffer, allocated now, at compile time
    ids.push_back(DNNL_ARG_SCRATCHPAD);
  }
  for (size_t i = 0; i < mems_.size(); ++i) args_.push_back({ids[i], mems_[i].get()});
}

void DnnlKernel::run(dnnl::stream& stream) {
  ++foreign_alloc_scope();
  dnnl_status_t st = dnnl_primitive_execute(prim_.get(), stream.get(), int(args_.size()), args_.data());
  --foreign_alloc_scope();
  if (st != dnnl_success) throw dnnl::error(st, "oneDNN primitive execution failed");
}

}  // namespace metagrad

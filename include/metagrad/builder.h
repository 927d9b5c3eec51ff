// The builder API: Tensor is a (graph, value) handle, so model code reads like math.
#pragma once
#include <initializer_list>
#include <string>
#include <vector>

#include "metagrad/graph.h"

namespace metagrad {

class Tensor {
 public:
  Tensor() = default;
  Tensor(Graph* g, Value v) : g_(g), v_(v) {}

  bool defined() const { return g_ != nullptr && v_.valid(); }
  explicit operator bool() const { return defined(); }
  Graph& graph() const;
  Value value() const { return v_; }
  const TensorType& type() const { return graph().type(v_); }
  const Shape& shape() const { return type().shape; }
  DType dtype() const { return type().dtype; }
  int64_t rank() const { return int64_t(shape().size()); }
  int64_t dim(int64_t axis) const;  // negative axes count from the end
  int64_t numel() const { return type().numel(); }
  const Node& node() const { return graph().node(v_.node); }

  // Names the producing node (shown in printouts and errors); returns *this.
  Tensor& named(const std::string& name);

 private:
  Graph* g_ = nullptr;
  Value v_;
};

// Generic application of a registered op.
Tensor apply(const std::string& op, const std::vector<Tensor>& inputs, Attrs attrs = {},
             const std::string& name = "");

// Leaves.
Tensor input(Graph& g, const std::string& name, const Shape& shape, DType dtype = DType::f32);
Tensor constant(Graph& g, const Shape& shape, std::vector<double> data, const std::string& name = "");
Tensor scalar(Graph& g, double v);
Tensor full(Graph& g, const Shape& shape, double v);  // a scalar constant broadcast to shape

// Persistent parameters; the initializer runs in the ParamStore with its own seed.
struct Init {
  std::string name;  // zeros | ones | constant | normal | uniform | truncated_normal
  Attrs attrs;       // e.g. {"std", 0.01}, {"seed", 3}
  static Init zeros() { return {"zeros", {}}; }
  static Init ones() { return {"ones", {}}; }
  static Init constant(double v) { return {"constant", {{"value", v}}}; }
  static Init normal(double mean, double std, int64_t seed) {
    return {"normal", {{"mean", mean}, {"std", std}, {"seed", seed}}};
  }
  static Init uniform(double lo, double hi, int64_t seed) {
    return {"uniform", {{"lo", lo}, {"hi", hi}, {"seed", seed}}};
  }
  static Init truncated_normal(double mean, double std, int64_t seed) {
    return {"truncated_normal", {{"mean", mean}, {"std", std}, {"seed", seed}}};
  }
};
Tensor parameter(Graph& g, const std::string& name, const Shape& shape, const Init& init,
                 bool trainable = true);

// Operators build elementwise ops with NumPy broadcasting; a double becomes a scalar constant.
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

}  // namespace metagrad

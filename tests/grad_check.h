// Gradient checks on the f64 reference interpreter: first- and second-order derivatives of a
// scalar against central differences, with inputs and parameters given by name alike.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/ops.h"
#include "metagrad/reference.h"
#include "tests/test_util.h"

namespace metagrad::testing {

// The parameter or input called `name` as a Tensor.
inline Tensor leaf(Graph& g, const std::string& name) {
  int id = g.find(name);
  if (id < 0) throw GraphError("no leaf " + name);
  return Tensor(&g, Value{id, 0});
}

// Evaluates with `vals` holding inputs and parameters alike, split by node kind.
inline std::vector<RefTensor> eval(const Graph& g, const std::vector<Tensor>& fetches, const RefValues& vals) {
  RefValues feeds, params;
  for (const auto& [name, v] : vals) {
    int id = g.find(name);
    if (id < 0) throw GraphError("no leaf " + name);
    (g.node(id).kind == NodeKind::Input ? feeds : params)[name] = v;
  }
  std::vector<Value> vs;
  for (const Tensor& t : fetches) vs.push_back(t.value());
  return reference_eval(g, vs, feeds, params);
}

inline double eval1(const Graph& g, const Tensor& t, const RefValues& vals) { return eval(g, {t}, vals)[0].data.at(0); }

// Central difference of scalar f with respect to element k of leaf `name`.
inline double central(const Graph& g, const Tensor& f, RefValues vals, const std::string& name, size_t k, double h = 1e-6) {
  const double x0 = vals.at(name).data[k];
  vals[name].data[k] = x0 + h;
  const double fp = eval1(g, f, vals);
  vals[name].data[k] = x0 - h;
  const double fm = eval1(g, f, vals);
  return (fp - fm) / (2 * h);
}

// Checks grad(f, wrt) (first order) and grad(sum_i ||grad_i||^2, wrt) (second order: the gradient of a
// scalar function of the gradient) against central differences. Every wrt is a named leaf in `vals`.
inline void check_gradients(Graph& g, const Tensor& f, const std::vector<Tensor>& wrt, const RefValues& vals,
                     double tol = 1e-6) {
  std::vector<Tensor> g1 = grad(f, wrt);
  Tensor s;
  for (const Tensor& d : g1) s = s.defined() ? s + sum(square(d)) : sum(square(d));
  std::vector<Tensor> g2 = grad(s, wrt);
  std::vector<Tensor> fetches = g1;
  fetches.insert(fetches.end(), g2.begin(), g2.end());
  std::vector<RefTensor> got = eval(g, fetches, vals);
  size_t checked = 0;
  for (size_t i = 0; i < wrt.size(); ++i) {
    const std::string& name = wrt[i].node().name;
    ASSERT_TRUE(vals.count(name)) << name;
    for (size_t k = 0; k < vals.at(name).data.size(); ++k) {
      const double a1 = got[i].data.at(k), n1 = central(g, f, vals, name, k);
      const double a2 = got[wrt.size() + i].data.at(k), n2 = central(g, s, vals, name, k);
      EXPECT_NEAR(a1, n1, tol * (1 + std::abs(n1))) << "first order, " << name << "[" << k << "]";
      EXPECT_NEAR(a2, n2, tol * (1 + std::abs(n2))) << "second order, " << name << "[" << k << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 0u);
}

// A nonlinear scalar read-out of a tensor, so second derivatives are not trivially zero.
inline Tensor readout(Graph& g, const Tensor& t, uint64_t seed) {
  RefTensor c = random_ref(t.shape(), seed);
  return sum(tanh(t) * constant(g, t.shape(), c.data));
}

}  // namespace metagrad::testing

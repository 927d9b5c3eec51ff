// The op registry, the only global table of the engine: built once, on first use, from every
// ops/ family (explicit calls, since static-initializer registration would be dropped by the
// linker from a static library).
#include "graph/op_def.h"
#include "ops/families.h"

namespace metagrad {

const OpRegistry& OpRegistry::get() {
  static const OpRegistry registry = [] {
    OpRegistry r;
    register_elementwise_ops(r);
    register_unary_ops(r);
    register_reduce_ops(r);
    register_shape_ops(r);
    register_indexing_ops(r);
    register_linalg_ops(r);
    register_conv_ops(r);
    register_pooling_ops(r);
    register_softmax_ops(r);
    register_batch_norm_ops(r);
    register_fused_ops(r);
    register_collective_ops(r);
    register_scan_ops(r);
    return r;
  }();
  return registry;
}

}  // namespace metagrad

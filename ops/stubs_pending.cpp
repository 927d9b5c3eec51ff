// Temporary: families not yet written register nothing. Deleted as each family lands.
#include "ops/families.h"
namespace metagrad {
void register_elementwise_ops(OpRegistry&) {}
void register_unary_ops(OpRegistry&) {}
void register_reduce_ops(OpRegistry&) {}
void register_shape_ops(OpRegistry&) {}
void register_linalg_ops(OpRegistry&) {}
void register_nn_ops(OpRegistry&) {}
}  // namespace metagrad

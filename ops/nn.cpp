// STUB: replaced by the real family.
#include "ops/families.h"
namespace metagrad {
void register_nn_ops(OpRegistry&) {}
}  // namespace metagrad

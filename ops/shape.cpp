// STUB: replaced by the real family.
#include "ops/families.h"
namespace metagrad {
void register_shape_ops(OpRegistry&) {}
}  // namespace metagrad

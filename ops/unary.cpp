// STUB: replaced by the real family.
#include "ops/families.h"
namespace metagrad {
void register_unary_ops(OpRegistry&) {}
}  // namespace metagrad

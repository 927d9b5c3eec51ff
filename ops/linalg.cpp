// STUB: replaced by the real family.
#include "ops/families.h"
namespace metagrad {
void register_linalg_ops(OpRegistry&) {}
}  // namespace metagrad

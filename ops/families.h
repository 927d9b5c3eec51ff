// Each ops/ family file adds its registry entries through one of these.
#pragma once

namespace metagrad {
class OpRegistry;
void register_elementwise_ops(OpRegistry& r);  // ops/elementwise.cpp, ops/unary.cpp
void register_unary_ops(OpRegistry& r);
void register_reduce_ops(OpRegistry& r);       // ops/reduce.cpp
void register_shape_ops(OpRegistry& r);        // ops/shape.cpp
void register_indexing_ops(OpRegistry& r);     // ops/indexing.cpp (gather, scatter_add, one_hot)
void register_linalg_ops(OpRegistry& r);       // ops/linalg.cpp
void register_conv_ops(OpRegistry& r);         // ops/conv.cpp
void register_pooling_ops(OpRegistry& r);      // ops/pooling.cpp
void register_softmax_ops(OpRegistry& r);      // ops/softmax.cpp
void register_batch_norm_ops(OpRegistry& r);  // ops/batch_norm.cpp
void register_fused_ops(OpRegistry& r);        // ops/fused.cpp (fused_elementwise)
void register_collective_ops(OpRegistry& r);   // ops/collective.cpp (allreduce_sum)
void register_scan_ops(OpRegistry& r);         // ops/scan.cpp (loops)
}  // namespace metagrad

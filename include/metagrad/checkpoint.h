// Checkpoints: every persistent tensor of a ParamStore (weights, optimizer state, learned rates,
// step counters) in a versioned binary file with a CRC-32, written atomically.
#pragma once
#include <string>

#include "metagrad/param_store.h"

namespace metagrad {

// Layout (little-endian): "MGCKPT\r\n", u32 version (1), u32 tensor count, then per tensor
// u32 name length, name, u32 rank, i64 dims[rank], f32 values[numel]; finally the CRC-32 of
// all preceding bytes. Written to "<path>.tmp" and renamed over `path`, so a crash never leaves
// a half-written checkpoint under the real name.
void save_checkpoint(const ParamStore& store, const std::string& path);

// Replaces every tensor of `store` with the file's. The file must hold exactly the store's
// tensors with the same shapes; anything else (truncation, corruption, another version, a
// missing, extra or reshaped tensor) is a RuntimeError naming the file and the tensor, and
// leaves the store untouched.
void load_checkpoint(ParamStore& store, const std::string& path);

}  // namespace metagrad

// Checkpoints: every persistent tensor of a ParamStore (weights, optimizer state, learned rates,
// step counters) in a versioned binary file with a CRC-32, written atomically.
#pragma once
#include <string>
#include <string_view>

#include "metagrad/param_store.h"

namespace metagrad {

// Layout (little-endian): "MGCKPT\r\n", u32 version (1), u32 tensor count, then per tensor
// u32 name length, name, u32 rank, i64 dims[rank], f32 values[numel]; finally the CRC-32 of
// all preceding bytes. Written with write_file_durably, so a crash or power loss at any moment
// leaves either the previous checkpoint or the new one under `path`, complete.
void save_checkpoint(const ParamStore& store, const std::string& path);

// Writes "<path>.tmp", fsyncs it, renames it over `path` and fsyncs the folder. Until the rename
// the previous file under `path` is untouched. Throws RuntimeError naming the file and the errno
// text on any failure.
void write_file_durably(const std::string& path, std::string_view bytes);

// Replaces every tensor of `store` with the file's. The file must hold exactly the store's
// tensors with the same shapes; anything else (truncation, corruption, another version, a
// missing, extra or reshaped tensor, an impossible shape, a file far larger than the model's)
// is a RuntimeError naming the file and the tensor, and leaves the store untouched.
void load_checkpoint(ParamStore& store, const std::string& path);

}  // namespace metagrad

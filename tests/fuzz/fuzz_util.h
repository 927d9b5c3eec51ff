// Shared by the fuzz targets: a private scratch folder for readers that take paths, and the
// one exception type a reader may throw on bad input (anything else is a finding).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace metagrad::fuzz {

// /dev/shm when there is one (the targets write a file per input), one folder per process.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    std::filesystem::path d = base / ("metagrad_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& p, const void* data, size_t size) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), std::streamsize(size));
}

// One thread: the machine is shared, and libFuzzer measures coverage per input, not speed.
inline void single_threaded() { ::setenv("OMP_NUM_THREADS", "1", 1); }

}  // namespace metagrad::fuzz

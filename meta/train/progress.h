// A one-line progress bar for long runs, redrawn in place at most ten times a second.
#pragma once
#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace metagrad {

class ProgressBar {
 public:
  // `out` may be null: then nothing is drawn.
  ProgressBar(std::ostream* out, int64_t total, std::string label);
  // Redraws if enough time passed (or when done == total); `status` is appended verbatim.
  void update(int64_t done, const std::string& status = "");
  // Whether update(done) would redraw: lets a caller skip formatting a status nobody sees.
  bool due(int64_t done) const;
  void finish(const std::string& status = "");
  double seconds() const;

 private:
  void draw(int64_t done, const std::string& status);
  std::ostream* out_;
  int64_t total_;
  std::string label_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace metagrad

// Progress bar.
#include "meta/train/progress.h"

#include <fmt/format.h>

namespace metagrad {

ProgressBar::ProgressBar(std::ostream* out, int64_t total, std::string label)
    : out_(out), total_(std::max<int64_t>(total, 1)), label_(std::move(label)),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

double ProgressBar::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

bool ProgressBar::due(int64_t done) const {
  return out_ && (done >= total_ || std::chrono::steady_clock::now() - last_ >= std::chrono::milliseconds(100));
}

void ProgressBar::update(int64_t done, const std::string& status) {
  if (!due(done)) return;
  last_ = std::chrono::steady_clock::now();
  draw(done, status);
}

void ProgressBar::finish(const std::string& status) {
  if (!out_) return;
  draw(total_, status);
  *out_ << "\n" << std::flush;
}

void ProgressBar::draw(int64_t done, const std::string& status) {
  constexpr int width = 30;
  int filled = int(width * done / total_);
  double secs = seconds();
  double rate = secs > 0 ? double(done) / secs : 0.0;
  double eta = rate > 0 ? double(total_ - done) / rate : 0.0;
  *out_ << fmt::format("\r{} [{}{}] {}/{} {:.0f} it/s eta {:.0f}s {}", label_, std::string(size_t(filled), '#'),
                       std::string(size_t(width - filled), '.'), done, total_, rate, eta, status)
        << std::flush;
}

}  // namespace metagrad

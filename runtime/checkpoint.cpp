#include "metagrad/checkpoint.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include "metagrad/error.h"

namespace metagrad {

namespace {

constexpr char kMagic[8] = {'M', 'G', 'C', 'K', 'P', 'T', '\r', '\n'};
constexpr uint32_t kVersion = 1;

template <class T>
void put(std::vector<char>& b, const T& v) {
  const char* p = reinterpret_cast<const char*>(&v);
  b.insert(b.end(), p, p + sizeof(T));
}

uint32_t crc_of(const char* data, size_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {  // crc32 takes a uInt length
    const uInt chunk = uInt(std::min<size_t>(n, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data), chunk);
    data += chunk;
    n -= chunk;
  }
  return uint32_t(crc);
}

// Bounds-checked reading of the file image.
class Reader {
 public:
  Reader(const std::vector<char>& b, size_t end, const std::string& path) : b_(b), end_(end), path_(path) {}
  template <class T>
  T get(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }
  const char* take(size_t n, const char* what) {
    if (n > end_ - at_) throw RuntimeError(fmt::format("{}: truncated checkpoint (reading {})", path_, what));
    const char* p = b_.data() + at_;
    at_ += n;
    return p;
  }
  bool done() const { return at_ == end_; }

 private:
  const std::vector<char>& b_;
  size_t end_, at_ = 0;
  const std::string& path_;
};

}  // namespace

void write_file_durably(const std::string& path, std::string_view bytes) {
  const std::string tmp = path + ".tmp";
  auto fail = [](const std::string& what, const std::string& file) {
    throw RuntimeError(fmt::format("{}: cannot {} ({})", file, what, std::strerror(errno)));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("create the file", tmp);
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      errno = e;
      fail("write", tmp);
    }
    done += size_t(n);
  }
  // The data must be on disk before the rename makes it the file's contents: otherwise a power
  // loss could leave the new name pointing at blocks never written.
  if (::fsync(fd) != 0) {
    const int e = errno;
    ::close(fd);
    errno = e;
    fail("flush to disk", tmp);
  }
  if (::close(fd) != 0) fail("close", tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("move into place", path);
  // The rename lives in the folder's entries: flush the folder too, so it survives a power loss.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) fail("open the folder to flush it", dir);
  const int synced = ::fsync(dfd);
  const int e = errno;
  ::close(dfd);
  errno = e;
  if (synced != 0) fail("flush the folder to disk", dir);
}

void save_checkpoint(const ParamStore& store, const std::string& path) {
  std::vector<char> b(kMagic, kMagic + sizeof kMagic);
  put(b, kVersion);
  const std::vector<std::string> names = store.names();
  put(b, uint32_t(names.size()));
  for (const std::string& name : names) {
    put(b, uint32_t(name.size()));
    b.insert(b.end(), name.begin(), name.end());
    const Shape& shape = store.type(name).shape;
    put(b, uint32_t(shape.size()));
    for (int64_t d : shape) put(b, d);
    auto values = store.data(name);
    const char* p = reinterpret_cast<const char*>(values.data());
    b.insert(b.end(), p, p + values.size_bytes());
  }
  put(b, crc_of(b.data(), b.size()));
  write_file_durably(path, std::string_view(b.data(), b.size()));
}

void load_checkpoint(ParamStore& store, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RuntimeError(fmt::format("{}: no such checkpoint", path));
  // The store fixes the size of a matching file; one far larger is refused before it is read.
  size_t expected = sizeof kMagic + 12;
  for (const std::string& name : store.names())
    expected += 8 + name.size() + 8 * store.type(name).shape.size() + store.data(name).size_bytes();
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec && size > 2 * expected + (1u << 20))
    throw RuntimeError(fmt::format("{}: {} bytes, far more than a checkpoint of this model ({} bytes)", path, size, expected));
  std::vector<char> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (b.size() < sizeof kMagic + 12 || std::memcmp(b.data(), kMagic, sizeof kMagic) != 0)
    throw RuntimeError(fmt::format("{}: not a metagrad checkpoint", path));
  uint32_t stored_crc;
  std::memcpy(&stored_crc, b.data() + b.size() - 4, 4);
  Reader r(b, b.size() - 4, path);
  r.take(sizeof kMagic, "magic");
  const uint32_t version = r.get<uint32_t>("version");
  if (version != kVersion)
    throw RuntimeError(fmt::format("{}: checkpoint version {}, this build reads version {}", path, version, kVersion));
  if (crc_of(b.data(), b.size() - 4) != stored_crc)
    throw RuntimeError(fmt::format("{}: checksum mismatch (the file is corrupt or truncated)", path));
  const uint32_t count = r.get<uint32_t>("tensor count");
  std::map<std::string, std::pair<const char*, size_t>> found;  // bytes may be unaligned
  for (uint32_t i = 0; i < count; ++i) {
    const uint32_t len = r.get<uint32_t>("name length");
    std::string name(r.take(len, "name"), len);
    const uint32_t rank = r.get<uint32_t>("rank");
    if (rank > kMaxDeclaredRank) throw RuntimeError(fmt::format("{}: tensor '{}' has implausible rank {}", path, name, rank));
    Shape shape;
    for (uint32_t d = 0; d < rank; ++d) shape.push_back(r.get<int64_t>("dimension"));
    if (std::string why = tensor_size_problem(shape); !why.empty())
      throw RuntimeError(fmt::format("{}: tensor '{}' declares an impossible shape: {}", path, name, why));
    if (!store.has(name))
      throw RuntimeError(fmt::format("{}: tensor '{}' is not part of this model", path, name));
    if (store.type(name).shape != shape)
      throw RuntimeError(fmt::format("{}: tensor '{}' has shape {} in the file, {} in the model", path, name,
                                     shape_str(shape), shape_str(store.type(name).shape)));
    const size_t n = store.data(name).size();
    found[name] = {r.take(n * sizeof(float), "values"), n};
  }
  if (!r.done()) throw RuntimeError(fmt::format("{}: trailing bytes after the last tensor", path));
  for (const std::string& name : store.names())
    if (!found.count(name)) throw RuntimeError(fmt::format("{}: the model's tensor '{}' is missing from the file", path, name));
  // Everything checked: only now touch the store.
  for (const auto& [name, bytes] : found) {
    std::vector<float> copy(bytes.second);
    std::memcpy(copy.data(), bytes.first, bytes.second * sizeof(float));
    store.set(name, copy);
  }
}

}  // namespace metagrad

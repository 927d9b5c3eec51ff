// Omniglot loader: a minimal zip reader (only what the released archives need), libpng's simplified
// API for decoding (its setjmp error path stays inside libpng, so no longjmp crosses our frames),
// area-averaging resize and episode sampling.
#include "meta/data/omniglot.h"

#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <utility>

#include "metagrad/error.h"

namespace metagrad {
namespace {

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw RuntimeError("omniglot: " + where + ": " + what);
}

std::string hex32(uint32_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s = "0x";
  for (int shift = 28; shift >= 0; shift -= 4) s += kDigits[(v >> shift) & 0xf];
  return s;
}

std::vector<uint8_t> read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(path, "read error");
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Zip archives

constexpr uint32_t kEocdSig = 0x06054b50, kCentralSig = 0x02014b50, kLocalSig = 0x04034b50;
constexpr size_t kEocdSize = 22, kCentralSize = 46, kLocalSize = 30;
constexpr uint32_t kMaxMemberSize = 64u << 20;  // far above any image; stops a corrupt size from allocating GBs

// Bounds-checked little-endian reads; `what` says which structure ran off the end of the file.
struct ByteView {
  const std::vector<uint8_t>& bytes;
  const std::string& path;

  void need(uint64_t at, uint64_t n, const char* what) const {
    if (at > bytes.size() || n > bytes.size() - at) fail(path, std::string("truncated ") + what);
  }
  uint16_t u16(uint64_t at) const { return static_cast<uint16_t>(bytes[at] | bytes[at + 1] << 8); }
  uint32_t u32(uint64_t at) const { return u16(at) | static_cast<uint32_t>(u16(at + 2)) << 16; }
};

struct ZipMember {
  std::string name;
  uint16_t flags = 0, method = 0;
  uint32_t crc = 0, packed_size = 0, size = 0, local_offset = 0;
};

struct CentralDirectory {
  uint64_t offset = 0, size = 0, entries = 0;
};

CentralDirectory find_central_directory(const ByteView& v) {
  if (v.bytes.size() < kEocdSize) fail(v.path, "not a zip archive (too short)");
  const uint64_t last = v.bytes.size() - kEocdSize;
  const uint64_t first = last > 0xffff ? last - 0xffff : 0;  // the archive comment is at most 64 KiB
  for (uint64_t at = last + 1; at-- > first;) {
    if (v.u32(at) != kEocdSig) continue;
    if (v.u16(at + 4) != 0 || v.u16(at + 6) != 0) fail(v.path, "multi-disk zip archives are not supported");
    CentralDirectory cd{v.u32(at + 16), v.u32(at + 12), v.u16(at + 10)};
    if (cd.entries == 0xffff || cd.size == 0xffffffff || cd.offset == 0xffffffff)
      fail(v.path, "ZIP64 archives are not supported");
    if (cd.offset + cd.size > at) fail(v.path, "truncated central directory");
    return cd;
  }
  fail(v.path, "not a zip archive (no end of central directory record)");
}

std::vector<ZipMember> read_central_directory(const ByteView& v) {
  const CentralDirectory cd = find_central_directory(v);
  std::vector<ZipMember> members;
  members.reserve(cd.entries);
  uint64_t at = cd.offset;
  for (uint64_t e = 0; e < cd.entries; ++e) {
    if (at + kCentralSize > cd.offset + cd.size) fail(v.path, "truncated central directory");
    if (v.u32(at) != kCentralSig) fail(v.path, "corrupt central directory entry " + std::to_string(e));
    ZipMember m;
    m.flags = v.u16(at + 8);
    m.method = v.u16(at + 10);
    m.crc = v.u32(at + 16);
    m.packed_size = v.u32(at + 20);
    m.size = v.u32(at + 24);
    m.local_offset = v.u32(at + 42);
    const uint64_t name_len = v.u16(at + 28), extra_len = v.u16(at + 30), comment_len = v.u16(at + 32);
    if (at + kCentralSize + name_len + extra_len + comment_len > cd.offset + cd.size)
      fail(v.path, "truncated central directory");
    m.name.assign(reinterpret_cast<const char*>(v.bytes.data() + at + kCentralSize), name_len);
    if (m.packed_size == 0xffffffff || m.size == 0xffffffff || m.local_offset == 0xffffffff)
      fail(v.path, m.name + ": ZIP64 members are not supported");
    members.push_back(std::move(m));
    at += kCentralSize + name_len + extra_len + comment_len;
  }
  return members;
}

std::vector<uint8_t> inflate_raw(const uint8_t* packed, uint32_t packed_size, uint32_t size, const std::string& where) {
  std::vector<uint8_t> out(std::max<uint32_t>(size, 1));  // zlib rejects a null output pointer
  z_stream s{};
  if (inflateInit2(&s, -MAX_WBITS) != Z_OK) fail(where, "cannot initialise zlib");
  s.next_in = const_cast<Bytef*>(packed);  // zlib's API is not const-correct; it does not write here
  s.avail_in = packed_size;
  s.next_out = out.data();
  s.avail_out = size;
  const int ret = inflate(&s, Z_FINISH);
  const uint64_t produced = s.total_out;
  const std::string detail = s.msg ? std::string(" (") + s.msg + ")" : "";
  inflateEnd(&s);
  if (ret != Z_STREAM_END || produced != size) fail(where, "corrupt deflate data" + detail);
  out.resize(size);
  return out;
}

std::vector<uint8_t> extract(const ByteView& v, const ZipMember& m) {
  const std::string where = v.path + ": " + m.name;
  if (m.flags & 1) fail(where, "encrypted members are not supported");
  if (m.size > kMaxMemberSize) fail(where, "member too large (" + std::to_string(m.size) + " bytes)");
  v.need(m.local_offset, kLocalSize, ("local header of " + m.name).c_str());
  if (v.u32(m.local_offset) != kLocalSig) fail(where, "corrupt local header");
  // The local header's name and extra field may differ in length from the central directory's.
  const uint64_t data = m.local_offset + kLocalSize + v.u16(m.local_offset + 26) + v.u16(m.local_offset + 28);
  v.need(data, m.packed_size, ("data of " + m.name).c_str());
  const uint8_t* packed = v.bytes.data() + data;
  std::vector<uint8_t> out;
  if (m.method == 0) {
    if (m.packed_size != m.size) fail(where, "stored member with different packed and unpacked sizes");
    out.assign(packed, packed + m.size);
  } else if (m.method == 8) {
    out = inflate_raw(packed, m.packed_size, m.size, where);
  } else {
    fail(where, "unsupported compression method " + std::to_string(m.method));
  }
  const uint32_t crc = static_cast<uint32_t>(crc32(crc32(0, nullptr, 0), out.data(), static_cast<uInt>(out.size())));
  if (crc != m.crc) fail(where, "CRC mismatch (expected " + hex32(m.crc) + ", got " + hex32(crc) + ")");
  return out;
}

// ---------------------------------------------------------------------------------------------
// Dataset assembly

bool ends_with_png(const std::string& name) {
  if (name.size() < 4) return false;
  std::string ext = name.substr(name.size() - 4);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return ext == ".png";
}

std::vector<std::string> split_path(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t slash; (slash = name.find('/', start)) != std::string::npos; start = slash + 1)
    if (slash > start) parts.push_back(name.substr(start, slash - start));
  if (start < name.size()) parts.push_back(name.substr(start));
  return parts;
}

using CharacterKey = std::pair<std::string, std::string>;  // (alphabet, character)

// Every directory in the archive must hold at least one image somewhere below it.
void check_no_empty_folders(const std::vector<ZipMember>& members, const std::string& path) {
  std::vector<std::string> images;
  for (const ZipMember& m : members)
    if (ends_with_png(m.name)) images.push_back(m.name);
  if (images.empty()) fail(path, "no PNG images in the archive");
  std::sort(images.begin(), images.end());
  for (const ZipMember& m : members) {
    if (m.name.empty() || m.name.back() != '/') continue;
    auto it = std::lower_bound(images.begin(), images.end(), m.name);
    if (it == images.end() || !it->starts_with(m.name)) fail(path, m.name + ": folder has no images");
  }
}

std::map<CharacterKey, std::vector<const ZipMember*>> group_by_character(const std::vector<ZipMember>& members,
                                                                         const std::string& path) {
  std::map<CharacterKey, std::vector<const ZipMember*>> groups;
  for (const ZipMember& m : members) {
    if (m.name.empty() || m.name.back() == '/' || !ends_with_png(m.name)) continue;
    const std::vector<std::string> parts = split_path(m.name);
    if (parts.size() < 3) fail(path, m.name + ": image is not inside an <alphabet>/<character>/ folder");
    groups[{parts[parts.size() - 3], parts[parts.size() - 2]}].push_back(&m);
  }
  for (auto& [key, list] : groups)
    std::sort(list.begin(), list.end(), [](const ZipMember* a, const ZipMember* b) { return a->name < b->name; });
  return groups;
}

// Counter-clockwise by 90 degrees (numpy.rot90's direction), one n x n image.
void rotate90(const float* in, float* out, int64_t n) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < n; ++c) out[r * n + c] = in[c * n + (n - 1 - r)];
}

std::vector<float> rotate_all(const std::vector<float>& images, int64_t n) {
  std::vector<float> out(images.size());
  const int64_t pixels = n * n;
  for (size_t at = 0; at < images.size(); at += static_cast<size_t>(pixels)) rotate90(&images[at], &out[at], n);
  return out;
}

std::vector<float> load_character(const ByteView& v, const std::vector<const ZipMember*>& files, int64_t side) {
  std::vector<float> out;
  out.reserve(files.size() * static_cast<size_t>(side * side));
  for (const ZipMember* m : files) {
    int64_t w = 0, h = 0;
    const std::vector<float> gray = decode_png_gray(extract(v, *m), w, h, v.path + ": " + m->name);
    for (float x : resize_area(gray, w, h, side, side)) out.push_back(1.0f - x);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Resizing and sampling helpers

struct Tap {
  int64_t src;
  float weight;
};

// Measured in units of 1/(in*out) so overlaps are exact integers: source pixel i spans
// [i*out, (i+1)*out) and output pixel o spans [o*in, (o+1)*in); the weights of each output sum to 1.
std::vector<std::vector<Tap>> area_taps(int64_t in, int64_t out) {
  std::vector<std::vector<Tap>> taps(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    const int64_t lo = o * in, hi = (o + 1) * in;
    for (int64_t i = lo / out; i < in && i * out < hi; ++i) {
      const int64_t overlap = std::min(hi, (i + 1) * out) - std::max(lo, i * out);
      if (overlap > 0) taps[o].push_back({i, static_cast<float>(static_cast<double>(overlap) / in)});
    }
  }
  return taps;
}

// The first k entries of a uniformly random permutation of 0..n-1 (partial Fisher-Yates).
std::vector<int64_t> pick_distinct(int64_t n, int64_t k, std::mt19937_64& rng) {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[i] = i;
  for (int64_t i = 0; i < k; ++i) {
    std::uniform_int_distribution<int64_t> pick(i, n - 1);
    std::swap(idx[i], idx[pick(rng)]);
  }
  idx.resize(static_cast<size_t>(k));
  return idx;
}

std::string class_name(const OmniglotClass& c) {
  return c.alphabet + "/" + c.character + " (rotation " + std::to_string(c.rotation) + ")";
}

// The classes an episode may draw from: all of them, or those of one random alphabet with enough.
std::vector<int64_t> episode_pool(const OmniglotSet& set, int64_t ways, bool within_alphabet, std::mt19937_64& rng) {
  const int64_t n = static_cast<int64_t>(set.classes.size());
  if (!within_alphabet) {
    if (n < ways)
      fail("sample_episode", std::to_string(ways) + "-way episode from only " + std::to_string(n) + " classes");
    std::vector<int64_t> all(static_cast<size_t>(n));
    for (int64_t c = 0; c < n; ++c) all[c] = c;
    return all;
  }
  std::map<std::string, std::vector<int64_t>> by_alphabet;
  for (int64_t c = 0; c < n; ++c) by_alphabet[set.classes[c].alphabet].push_back(c);
  std::vector<const std::vector<int64_t>*> eligible;
  size_t largest = 0;
  for (const auto& [alphabet, list] : by_alphabet) {
    largest = std::max(largest, list.size());
    if (static_cast<int64_t>(list.size()) >= ways) eligible.push_back(&list);
  }
  if (eligible.empty())
    fail("sample_episode", "no alphabet has " + std::to_string(ways) + " classes (the largest has " +
                               std::to_string(largest) + ")");
  std::uniform_int_distribution<size_t> pick(0, eligible.size() - 1);
  return *eligible[pick(rng)];
}

}  // namespace

int64_t OmniglotSet::count(int64_t c) const {
  if (c < 0 || c >= static_cast<int64_t>(images.size()))
    fail("OmniglotSet", "class " + std::to_string(c) + " out of range [0, " + std::to_string(images.size()) + ")");
  return static_cast<int64_t>(images[c].size()) / (image * image);
}

const float* OmniglotSet::image_ptr(int64_t c, int64_t i) const {
  const int64_t n = count(c);
  if (i < 0 || i >= n)
    fail("OmniglotSet", "image " + std::to_string(i) + " of class " + std::to_string(c) + " out of range [0, " +
                            std::to_string(n) + ")");
  return images[c].data() + i * image * image;
}

std::vector<float> decode_png_gray(const std::vector<uint8_t>& bytes, int64_t& width, int64_t& height,
                                   const std::string& name_for_errors) {
  constexpr uint64_t kMaxPixels = uint64_t{1} << 26;  // refuse absurd headers before allocating
  if (bytes.empty()) fail(name_for_errors, "corrupt PNG (empty)");
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&img, bytes.data(), bytes.size())) {
    const std::string msg = img.message;
    png_image_free(&img);
    fail(name_for_errors, "corrupt PNG (" + msg + ")");
  }
  if (img.width == 0 || img.height == 0 || uint64_t{img.width} * img.height > kMaxPixels) {
    png_image_free(&img);
    fail(name_for_errors, "PNG size " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                              " out of range");
  }
  img.format = PNG_FORMAT_GRAY;
  std::vector<uint8_t> pixels(size_t{img.width} * img.height);
  if (!png_image_finish_read(&img, nullptr, pixels.data(), 0, nullptr)) {
    const std::string msg = img.message;
    png_image_free(&img);
    fail(name_for_errors, "corrupt PNG (" + msg + ")");
  }
  width = img.width;
  height = img.height;
  png_image_free(&img);
  std::vector<float> out(pixels.size());
  for (size_t i = 0; i < pixels.size(); ++i) out[i] = static_cast<float>(pixels[i]) / 255.0f;
  return out;
}

std::vector<float> read_png_gray(const std::string& path, int64_t& width, int64_t& height) {
  return decode_png_gray(read_whole_file(path), width, height, path);
}

std::vector<float> resize_area(const std::vector<float>& src, int64_t w, int64_t h, int64_t out_w, int64_t out_h) {
  if (w <= 0 || h <= 0 || out_w <= 0 || out_h <= 0 || static_cast<int64_t>(src.size()) != w * h)
    fail("resize_area", "bad sizes: " + std::to_string(src.size()) + " values for " + std::to_string(w) + "x" +
                            std::to_string(h) + " -> " + std::to_string(out_w) + "x" + std::to_string(out_h));
  const auto tx = area_taps(w, out_w), ty = area_taps(h, out_h);
  std::vector<float> rows(static_cast<size_t>(h * out_w));  // horizontal pass: h x out_w
  for (int64_t y = 0; y < h; ++y)
    for (int64_t ox = 0; ox < out_w; ++ox) {
      double acc = 0;
      for (const Tap& t : tx[ox]) acc += static_cast<double>(t.weight) * src[y * w + t.src];
      rows[y * out_w + ox] = static_cast<float>(acc);
    }
  std::vector<float> out(static_cast<size_t>(out_h * out_w));
  for (int64_t oy = 0; oy < out_h; ++oy)
    for (int64_t ox = 0; ox < out_w; ++ox) {
      double acc = 0;
      for (const Tap& t : ty[oy]) acc += static_cast<double>(t.weight) * rows[t.src * out_w + ox];
      out[oy * out_w + ox] = static_cast<float>(acc);
    }
  return out;
}

OmniglotSet load_omniglot_zip(const std::string& zip_path, const OmniglotOptions& opt) {
  if (opt.image <= 0 || opt.image > 4096) fail(zip_path, "image side " + std::to_string(opt.image) + " out of range");
  const std::vector<uint8_t> bytes = read_whole_file(zip_path);
  const ByteView view{bytes, zip_path};
  const std::vector<ZipMember> members = read_central_directory(view);
  check_no_empty_folders(members, zip_path);
  OmniglotSet set;
  set.image = opt.image;
  for (const auto& [key, files] : group_by_character(members, zip_path)) {
    std::vector<float> base = load_character(view, files, opt.image);
    std::vector<float> turned = opt.rotations ? rotate_all(base, opt.image) : std::vector<float>{};
    set.classes.push_back({key.first, key.second, 0});
    set.images.push_back(std::move(base));
    for (int rotation = 90; opt.rotations && rotation < 360; rotation += 90) {
      set.classes.push_back({key.first, key.second, rotation});
      set.images.push_back(turned);
      if (rotation < 270) turned = rotate_all(turned, opt.image);
    }
  }
  return set;
}

Episode sample_episode(const OmniglotSet& set, int64_t ways, int64_t shots, int64_t query, bool within_alphabet,
                       std::mt19937_64& rng) {
  if (ways <= 0 || shots < 0 || query < 0 || shots + query <= 0)
    fail("sample_episode", "bad episode shape: ways " + std::to_string(ways) + ", shots " + std::to_string(shots) +
                               ", query " + std::to_string(query));
  if (set.images.size() != set.classes.size() || set.image <= 0)
    fail("sample_episode", "inconsistent OmniglotSet");
  const std::vector<int64_t> pool = episode_pool(set, ways, within_alphabet, rng);
  const std::vector<int64_t> chosen = pick_distinct(static_cast<int64_t>(pool.size()), ways, rng);
  const int64_t pixels = set.image * set.image;
  Episode ep;
  ep.support.resize(static_cast<size_t>(ways * shots * pixels));
  ep.query.resize(static_cast<size_t>(ways * query * pixels));
  for (int64_t k = 0; k < ways; ++k) {
    const int64_t c = pool[chosen[k]];
    const int64_t n = set.count(c);
    if (n < shots + query)
      fail("sample_episode", class_name(set.classes[c]) + " has " + std::to_string(n) + " images, fewer than " +
                                 std::to_string(shots) + " shots + " + std::to_string(query) + " query");
    const std::vector<int64_t> picks = pick_distinct(n, shots + query, rng);
    for (int64_t j = 0; j < shots + query; ++j) {
      const float* img = set.image_ptr(c, picks[j]);
      float* dst = j < shots ? &ep.support[(k * shots + j) * pixels] : &ep.query[(k * query + j - shots) * pixels];
      std::copy(img, img + pixels, dst);
    }
    ep.support_labels.insert(ep.support_labels.end(), static_cast<size_t>(shots), static_cast<int32_t>(k));
    ep.query_labels.insert(ep.query_labels.end(), static_cast<size_t>(query), static_cast<int32_t>(k));
  }
  return ep;
}

}  // namespace metagrad

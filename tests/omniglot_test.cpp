// Omniglot loader: the real small background archives (class counts, value ranges, exact rotations),
// area resizing against hand-computed values, episode sampling on a synthetic set whose pixels encode
// (class, image), and every error path on hand-built or damaged archives and PNGs.
#include "meta/data/omniglot.h"

#include <gtest/gtest.h>
#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <numeric>
#include <optional>
#include <set>
#include <tuple>

#include "metagrad/error.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

std::string data_dir() { return std::string(METAGRAD_SOURCE_DIR) + "/data/omniglot"; }
std::string small1_path() { return data_dir() + "/images_background_small1.zip"; }
std::string small2_path() { return data_dir() + "/images_background_small2.zip"; }

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "omniglot_test_" + name; }

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string write_bytes(const std::string& name, const std::string& bytes) {
  const std::string path = temp_path(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  EXPECT_TRUE(out.good()) << path;
  return path;
}


// ---- hand-built archives ----------------------------------------------------------------------

void put16(std::string& s, uint32_t v) {
  s += static_cast<char>(v & 0xff);
  s += static_cast<char>((v >> 8) & 0xff);
}
void put32(std::string& s, uint32_t v) {
  put16(s, v & 0xffff);
  put16(s, v >> 16);
}
uint32_t get32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(s[at + i]);
  return v;
}

uint32_t crc_of(const std::string& data) {
  return static_cast<uint32_t>(
      crc32(crc32(0, nullptr, 0), reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

struct Member {
  std::string name, data;
  uint16_t method = 0;                 // the data is written as given whatever the method says
  std::optional<uint32_t> crc;         // overrides the true CRC
  std::string local_extra;             // only in the local header, as some zip writers do
};

Member entry(std::string name, std::string data, uint16_t method = 0, std::optional<uint32_t> crc = std::nullopt,
             std::string local_extra = "") {
  return Member{std::move(name), std::move(data), method, crc, std::move(local_extra)};
}

// A zip with every member stored; `zip64` puts the ZIP64 markers into the end record.
std::string make_zip(const std::vector<Member>& members, bool zip64 = false) {
  std::string out, central;
  for (const Member& m : members) {
    const uint32_t offset = static_cast<uint32_t>(out.size());
    const uint32_t crc = m.crc.value_or(crc_of(m.data));
    const uint32_t size = static_cast<uint32_t>(m.data.size());
    put32(out, 0x04034b50);
    put16(out, 20), put16(out, 0), put16(out, m.method), put32(out, 0), put32(out, crc);
    put32(out, size), put32(out, size);
    put16(out, static_cast<uint32_t>(m.name.size())), put16(out, static_cast<uint32_t>(m.local_extra.size()));
    out += m.name + m.local_extra + m.data;
    put32(central, 0x02014b50);
    put16(central, 20), put16(central, 20), put16(central, 0), put16(central, m.method), put32(central, 0);
    put32(central, crc), put32(central, size), put32(central, size);
    put16(central, static_cast<uint32_t>(m.name.size())), put16(central, 0), put16(central, 0);
    put16(central, 0), put16(central, 0), put32(central, 0), put32(central, offset);
    central += m.name;
  }
  const uint32_t cd_offset = static_cast<uint32_t>(out.size());
  out += central;
  put32(out, 0x06054b50);
  put16(out, 0), put16(out, 0);
  put16(out, static_cast<uint32_t>(members.size()));
  put16(out, zip64 ? 0xffff : static_cast<uint32_t>(members.size()));
  put32(out, static_cast<uint32_t>(central.size())), put32(out, zip64 ? 0xffffffff : cd_offset), put16(out, 0);
  return out;
}

// An 8-bit grayscale PNG of `gray` (row-major, width x height).
std::string make_png(const std::vector<uint8_t>& gray, uint32_t width, uint32_t height) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = width;
  img.height = height;
  img.format = PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  EXPECT_TRUE(png_image_write_to_memory(&img, nullptr, &size, 0, gray.data(), 0, nullptr)) << img.message;
  std::string out(size, '\0');
  EXPECT_TRUE(png_image_write_to_memory(&img, out.data(), &size, 0, gray.data(), 0, nullptr)) << img.message;
  out.resize(size);
  return out;
}

std::vector<uint8_t> as_bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

// Counter-clockwise quarter turn of one n x n image, written independently of the loader's.
std::vector<float> rot90(const float* img, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n * n));
  for (int64_t y = 0; y < n; ++y)
    for (int64_t x = 0; x < n; ++x) out[(n - 1 - x) * n + y] = img[y * n + x];  // (x, y) -> (y, n-1-x)
  return out;
}

const OmniglotSet& small1() {
  static const OmniglotSet set = load_omniglot_zip(small1_path());
  return set;
}

// ---- the real archives ------------------------------------------------------------------------

TEST(Omniglot, Small1HasFourRotationsOf136Characters) {
  const OmniglotSet& s = small1();
  ASSERT_EQ(s.image, 28);
  ASSERT_EQ(s.classes.size(), 544u);
  ASSERT_EQ(s.images.size(), 544u);
  std::set<std::string> alphabets;
  for (size_t c = 0; c < s.classes.size(); ++c) {
    EXPECT_EQ(s.count(static_cast<int64_t>(c)), 20) << c;
    EXPECT_EQ(s.images[c].size(), 20u * 28 * 28) << c;
    EXPECT_EQ(s.classes[c].rotation, static_cast<int>(c % 4) * 90) << c;
    EXPECT_EQ(s.classes[c].character, s.classes[c - c % 4].character) << c;
    alphabets.insert(s.classes[c].alphabet);
    if (c > 0) {
      const OmniglotClass &a = s.classes[c - 1], &b = s.classes[c];
      EXPECT_LT(std::tie(a.alphabet, a.character, a.rotation), std::tie(b.alphabet, b.character, b.rotation)) << c;
    }
  }
  EXPECT_EQ(alphabets, (std::set<std::string>{"Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"}));
  EXPECT_EQ(s.classes[0].alphabet, "Balinese");
  EXPECT_EQ(s.classes[0].character, "character01");
}

TEST(Omniglot, Small1ValuesAreInkFractions) {
  const OmniglotSet& s = small1();
  double sum = 0;
  size_t n = 0, strictly_between = 0;
  for (const auto& imgs : s.images)
    for (float v : imgs) {
      ASSERT_GE(v, 0.0f);
      ASSERT_LE(v, 1.0f);
      sum += v;
      ++n;
      strictly_between += v > 0.0f && v < 1.0f;
    }
  const double mean = sum / static_cast<double>(n);
  EXPECT_GT(mean, 0.02);
  EXPECT_LT(mean, 0.4);
  EXPECT_GT(strictly_between, 0u);  // area averaging blends stroke edges
  // Ink is the minority in every image, so no image came out un-inverted.
  for (int64_t c = 0; c < static_cast<int64_t>(s.classes.size()); c += 4)
    for (int64_t i = 0; i < s.count(c); ++i) {
      const float* p = s.image_ptr(c, i);
      const double ink = std::accumulate(p, p + 28 * 28, 0.0) / (28 * 28);
      EXPECT_GT(ink, 0.0) << c << " " << i;
      EXPECT_LT(ink, 0.5) << c << " " << i;
    }
}

TEST(Omniglot, RotationClassesAreExactQuarterTurns) {
  const OmniglotSet& s = small1();
  for (int64_t base : {int64_t{0}, int64_t{100}, int64_t{540}}) {
    for (int64_t i = 0; i < 20; ++i) {
      std::vector<float> expect(s.image_ptr(base, i), s.image_ptr(base, i) + 28 * 28);
      for (int r = 1; r < 4; ++r) {
        expect = rot90(expect.data(), 28);
        const float* got = s.image_ptr(base + r, i);
        ASSERT_TRUE(std::equal(expect.begin(), expect.end(), got)) << "class " << base + r << " image " << i;
      }
      // and the quarter turn is not the identity on real characters
      EXPECT_FALSE(std::equal(expect.begin(), expect.end(), s.image_ptr(base, i)));
    }
  }
}

TEST(Omniglot, WithoutRotationsGivesTheBaseClasses) {
  const OmniglotSet plain = load_omniglot_zip(small1_path(), {.image = 28, .rotations = false});
  const OmniglotSet& rotated = small1();
  ASSERT_EQ(plain.classes.size(), 136u);
  for (size_t c = 0; c < plain.classes.size(); ++c) {
    EXPECT_EQ(plain.classes[c].rotation, 0);
    EXPECT_EQ(plain.classes[c].character, rotated.classes[4 * c].character);
    EXPECT_EQ(plain.classes[c].alphabet, rotated.classes[4 * c].alphabet);
    EXPECT_EQ(plain.images[c], rotated.images[4 * c]) << c;
  }
}

TEST(Omniglot, FullSizeImagesMatchDirectDecoding) {
  // At 105 the resize is the identity, so the loader gives the 1-bit ink itself; shrinking that
  // must agree with the loader's 28x28 images.
  const OmniglotSet full = load_omniglot_zip(small2_path(), {.image = 105, .rotations = false});
  ASSERT_EQ(full.classes.size(), 156u);
  for (size_t c = 0; c < full.classes.size(); ++c) ASSERT_EQ(full.count(static_cast<int64_t>(c)), 20) << c;
  for (float v : full.images[0]) ASSERT_TRUE(v == 0.0f || v == 1.0f) << v;  // 1-bit source
  const OmniglotSet small = load_omniglot_zip(small2_path(), {.image = 28, .rotations = false});
  ASSERT_EQ(small.classes.size(), 156u);
  for (int64_t i = 0; i < 20; ++i) {
    const float* p = full.image_ptr(7, i);
    const std::vector<float> shrunk = resize_area(std::vector<float>(p, p + 105 * 105), 105, 105, 28, 28);
    const float* got = small.image_ptr(7, i);  // inverting before or after averaging differs by rounding
    for (size_t k = 0; k < shrunk.size(); ++k) ASSERT_NEAR(shrunk[k], got[k], 1e-6f) << i << " " << k;
  }
}

TEST(Omniglot, IndexingChecksBounds) {
  const OmniglotSet& s = small1();
  EXPECT_THROW(s.count(-1), RuntimeError);
  EXPECT_THROW(s.count(544), RuntimeError);
  EXPECT_THROW(s.image_ptr(0, 20), RuntimeError);
  EXPECT_EQ(s.image_ptr(3, 2), s.images[3].data() + 2 * 28 * 28);
}

// ---- resizing and PNG decoding ----------------------------------------------------------------

TEST(Omniglot, ResizeOfConstantIsConstant) {
  const std::vector<std::array<int64_t, 4>> sizes = {{105, 105, 28, 28}, {7, 5, 3, 4}, {2, 3, 5, 7}, {1, 1, 4, 2}};
  for (auto [w, h, ow, oh] : sizes) {
    const std::vector<float> out = resize_area(std::vector<float>(static_cast<size_t>(w * h), 0.37f), w, h, ow, oh);
    ASSERT_EQ(out.size(), static_cast<size_t>(ow * oh));
    for (float v : out) EXPECT_NEAR(v, 0.37f, 1e-6f) << w << "x" << h << " -> " << ow << "x" << oh;
  }
}

TEST(Omniglot, ResizeAveragesCoveredAreas) {
  // 4x4 -> 2x2: plain 2x2 block means.
  const std::vector<float> src = {0, 1, 2, 3,  //
                                  4, 5, 6, 7,  //
                                  8, 9, 10, 11,  //
                                  12, 13, 14, 15};
  const std::vector<float> blocks = resize_area(src, 4, 4, 2, 2);
  const std::vector<float> expect_blocks = {2.5f, 4.5f, 10.5f, 12.5f};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(blocks[i], expect_blocks[i], 1e-6f) << i;
  // 3 -> 2: each output covers 1.5 source pixels, (0*1 + 3*0.5)/1.5 = 1 and (3*0.5 + 6*1)/1.5 = 5.
  const std::vector<float> row = resize_area({0, 3, 6}, 3, 1, 2, 1);
  EXPECT_NEAR(row[0], 1.0f, 1e-6f);
  EXPECT_NEAR(row[1], 5.0f, 1e-6f);
  // 3x3 -> 2x2 of a single ink pixel in the centre: each output holds a quarter of it, 0.25/2.25.
  const std::vector<float> dot = resize_area({0, 0, 0, 0, 1, 0, 0, 0, 0}, 3, 3, 2, 2);
  for (float v : dot) EXPECT_NEAR(v, 0.25f / 2.25f, 1e-6f);
  // Upsampling 2 -> 4 repeats pixels; 1x2 -> 1x3 splits the middle output evenly.
  const std::vector<float> up = resize_area({1, 3}, 2, 1, 4, 1);
  EXPECT_EQ(up, (std::vector<float>{1, 1, 3, 3}));
  const std::vector<float> col = resize_area({1, 3}, 1, 2, 1, 3);
  EXPECT_NEAR(col[0], 1.0f, 1e-6f);
  EXPECT_NEAR(col[1], 2.0f, 1e-6f);
  EXPECT_NEAR(col[2], 3.0f, 1e-6f);
  // Same size is the identity.
  EXPECT_EQ(resize_area(src, 4, 4, 4, 4), src);
}

TEST(Omniglot, ResizeRejectsBadSizes) {
  EXPECT_THROW(resize_area({1, 2, 3}, 2, 2, 1, 1), RuntimeError);
  EXPECT_THROW(resize_area({1, 2, 3, 4}, 2, 2, 0, 1), RuntimeError);
}

TEST(Omniglot, DecodesGrayPngWithWhiteAsOne) {
  const std::vector<uint8_t> gray = {0, 255, 51, 102, 204, 255};
  const std::string png = make_png(gray, 3, 2);
  int64_t w = 0, h = 0;
  const std::vector<float> px = decode_png_gray(as_bytes(png), w, h, "tiny.png");
  EXPECT_EQ(w, 3);
  EXPECT_EQ(h, 2);
  ASSERT_EQ(px.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(px[i], gray[i] / 255.0f) << i;
  const std::string path = write_bytes("tiny.png", png);
  int64_t w2 = 0, h2 = 0;
  EXPECT_EQ(read_png_gray(path, w2, h2), px);
  EXPECT_EQ(w2, 3);
  EXPECT_EQ(h2, 2);
}

TEST(Omniglot, CorruptPngThrowsNamingIt) {
  int64_t w = 0, h = 0;
  testing::expect_runtime_error([&] { decode_png_gray({}, w, h, "empty.png"); }, {"empty.png"});
  testing::expect_runtime_error([&] { decode_png_gray(as_bytes("definitely not a png file"), w, h, "text.png"); }, {"text.png", "PNG"});
  std::vector<uint8_t> gray(64 * 64);
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<uint8_t>(i * 7);
  const std::string png = make_png(gray, 64, 64);
  testing::expect_runtime_error([&] { decode_png_gray(as_bytes(png.substr(0, png.size() / 2)), w, h, "half.png"); },
               {"half.png", "PNG"});
  std::string flipped = png;
  flipped[png.size() / 2] = static_cast<char>(flipped[png.size() / 2] ^ 0x55);  // chunk CRC no longer matches
  testing::expect_runtime_error([&] { decode_png_gray(as_bytes(flipped), w, h, "flipped.png"); }, {"flipped.png", "PNG"});
  const std::string missing = temp_path("no_such_image.png");
  testing::expect_runtime_error([&] { read_png_gray(missing, w, h); }, {missing});
}

// ---- hand-built archives ----------------------------------------------------------------------

std::string ink_png(const std::vector<uint8_t>& ink, uint32_t side) {  // ink 1 = black
  std::vector<uint8_t> gray(ink.size());
  for (size_t i = 0; i < ink.size(); ++i) gray[i] = ink[i] ? 0 : 255;
  return make_png(gray, side, side);
}

TEST(Omniglot, LoadsHandBuiltStoredArchive) {
  // Members out of order, one with a local-only extra field; 4x4 images shrunk to 2x2.
  const std::string a = ink_png({1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 4);  // top-left block
  const std::string b = ink_png({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0}, 4);  // 3/4 of bottom-right
  const std::string zip = make_zip({entry("set/", ""),
                                    entry("set/Zeta/character02/b_2.png", b),
                                    entry("set/Zeta/character02/a_1.png", a, 0, std::nullopt, "XYZW"),
                                    entry("set/Alpha/character01/c_1.png", b),
                                    entry("set/README.txt", "ignored")});
  const OmniglotSet s = load_omniglot_zip(write_bytes("good.zip", zip), {.image = 2, .rotations = true});
  ASSERT_EQ(s.classes.size(), 8u);
  EXPECT_EQ(s.classes[0].alphabet, "Alpha");
  EXPECT_EQ(s.classes[4].alphabet, "Zeta");
  EXPECT_EQ(s.classes[4].character, "character02");
  EXPECT_EQ(s.classes[5].rotation, 90);
  EXPECT_EQ(s.count(0), 1);
  EXPECT_EQ(s.count(4), 2);
  const std::vector<float> bottom_right = {0, 0, 0, 0.75f};
  EXPECT_EQ(s.images[0], bottom_right);
  // Images sorted by name: a_1 (top-left block) before b_2.
  EXPECT_EQ(s.images[4], (std::vector<float>{1, 0, 0, 0, 0, 0, 0, 0.75f}));
  // Counter-clockwise quarter turn moves the top-left corner to the bottom-left.
  EXPECT_EQ(s.images[5], (std::vector<float>{0, 0, 1, 0, 0, 0.75f, 0, 0}));
  EXPECT_EQ(s.images[6], (std::vector<float>{0, 0, 0, 1, 0.75f, 0, 0, 0}));
}

TEST(Omniglot, MissingOrNonZipFileThrowsNamingIt) {
  const std::string missing = temp_path("does_not_exist.zip");
  testing::expect_runtime_error([&] { load_omniglot_zip(missing); }, {missing});
  std::string noise(5000, '\0');
  uint32_t x = 12345;
  for (char& ch : noise) ch = static_cast<char>((x = x * 1103515245u + 12345u) >> 24);
  const std::string noise_path = write_bytes("noise.zip", noise);
  testing::expect_runtime_error([&] { load_omniglot_zip(noise_path); }, {noise_path, "not a zip"});
  const std::string tiny_path = write_bytes("tiny.zip", "PK");
  testing::expect_runtime_error([&] { load_omniglot_zip(tiny_path); }, {tiny_path, "not a zip"});
}

TEST(Omniglot, TruncatedArchiveThrowsNamingIt) {
  const std::string real = read_bytes(small1_path());
  ASSERT_GT(real.size(), 100000u);
  const std::string half = write_bytes("half.zip", real.substr(0, real.size() / 2));
  testing::expect_runtime_error([&] { load_omniglot_zip(half); }, {half});
  // The end record intact but claiming a central directory larger than the file holds.
  std::string grown = real;
  const size_t eocd = grown.size() - 22;
  ASSERT_EQ(get32(grown, eocd), 0x06054b50u);
  const uint32_t cd_size = get32(grown, eocd + 12) + 1000;
  for (int i = 0; i < 4; ++i) grown[eocd + 12 + i] = static_cast<char>(cd_size >> (8 * i));
  const std::string grown_path = write_bytes("grown_cd.zip", grown);
  testing::expect_runtime_error([&] { load_omniglot_zip(grown_path); }, {grown_path, "truncated central directory"});
  // The end record intact but the central directory's tail cut away.
  const uint32_t cd_offset = get32(real, eocd + 16);
  std::string cut = real.substr(0, cd_offset + 1000) + real.substr(eocd);
  const uint32_t cut_size = 1000;
  for (int i = 0; i < 4; ++i) cut[cd_offset + 1000 + 12 + i] = static_cast<char>(cut_size >> (8 * i));
  const std::string cut_path = write_bytes("cut_cd.zip", cut);
  testing::expect_runtime_error([&] { load_omniglot_zip(cut_path); }, {cut_path, "central directory"});
}

TEST(Omniglot, DamagedMemberThrowsNamingMember) {
  const std::string real = read_bytes(small1_path());
  const std::string member = "images_background_small1/Balinese/character01/0108_01.png";
  // A flipped byte in the compressed data: either inflate or the CRC check must catch it.
  const size_t local_name = real.find(member);
  ASSERT_NE(local_name, std::string::npos);
  const size_t header = local_name - 30;
  ASSERT_EQ(get32(real, header), 0x04034b50u);
  const size_t extra = static_cast<uint8_t>(real[header + 28]) | static_cast<uint8_t>(real[header + 29]) << 8;
  const size_t data = local_name + member.size() + extra;
  std::string flipped = real;
  flipped[data + 40] = static_cast<char>(flipped[data + 40] ^ 0x10);
  const std::string flipped_path = write_bytes("flipped_data.zip", flipped);
  testing::expect_runtime_error([&] { load_omniglot_zip(flipped_path); }, {flipped_path, member});
  // A flipped byte in the central directory's CRC: the data inflates fine but the checksum differs.
  const size_t central_name = real.rfind(member);
  ASSERT_GT(central_name, local_name);
  ASSERT_EQ(get32(real, central_name - 46), 0x02014b50u);
  std::string bad_crc = real;
  bad_crc[central_name - 46 + 16] = static_cast<char>(bad_crc[central_name - 46 + 16] ^ 0x01);
  const std::string bad_crc_path = write_bytes("bad_crc.zip", bad_crc);
  testing::expect_runtime_error([&] { load_omniglot_zip(bad_crc_path); }, {bad_crc_path, member, "CRC mismatch"});
}

TEST(Omniglot, HandBuiltArchiveErrorsNameFileAndMember) {
  const std::string png = ink_png({1, 0, 0, 1}, 2);
  const std::string name = "s/Alpha/character01/x_1.png";
  struct Case {
    const char* file;
    std::string zip;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"crc.zip", make_zip({entry(name, png, 0, crc_of(png) ^ 1)}), {name, "CRC mismatch"}},
      {"method.zip", make_zip({entry(name, png, 12)}), {name, "compression method 12"}},
      {"badpng.zip", make_zip({entry(name, "not a png at all")}), {name, "PNG"}},
      {"emptyfolder.zip",
       make_zip({entry(name, png), entry("s/Alpha/character02/", "")}),
       {"s/Alpha/character02/", "no images"}},
      {"noimages.zip", make_zip({entry("s/", ""), entry("s/notes.txt", "hi")}), {"no PNG"}},
      {"shallow.zip", make_zip({entry("x.png", png)}), {"x.png"}},
      {"zip64.zip", make_zip({entry(name, png)}, true), {"ZIP64"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    const std::string path = write_bytes(c.file, c.zip);
    std::vector<std::string> needles = c.needles;
    needles.push_back(path);
    testing::expect_runtime_error([&] { load_omniglot_zip(path, {.image = 2}); }, needles);
  }
  // The same member with a correct CRC loads.
  const OmniglotSet ok = load_omniglot_zip(write_bytes("ok.zip", make_zip({entry(name, png)})),
                                           {.image = 2, .rotations = false});
  EXPECT_EQ(ok.images.at(0), (std::vector<float>{1, 0, 0, 1}));
}

// ---- episodes ---------------------------------------------------------------------------------

// Class c's image i holds c in pixel 0, i in pixel 1 and the class's alphabet index in pixel 2.
OmniglotSet coded_set(const std::vector<int>& classes_per_alphabet, int images_per_class) {
  OmniglotSet s;
  s.image = 2;
  for (size_t a = 0; a < classes_per_alphabet.size(); ++a)
    for (int k = 0; k < classes_per_alphabet[a]; ++k) {
      const float c = static_cast<float>(s.classes.size());
      s.classes.push_back({"alphabet" + std::to_string(a), "character" + std::to_string(k), 0});
      std::vector<float> imgs;
      for (int i = 0; i < images_per_class; ++i)
        imgs.insert(imgs.end(), {c, static_cast<float>(i), static_cast<float>(a), 0.5f});
      s.images.push_back(std::move(imgs));
    }
  return s;
}

struct Drawn {
  int64_t cls, img, alphabet;
};
std::vector<Drawn> decode(const std::vector<float>& images) {
  std::vector<Drawn> out;
  for (size_t at = 0; at < images.size(); at += 4)
    out.push_back({static_cast<int64_t>(images[at]), static_cast<int64_t>(images[at + 1]),
                   static_cast<int64_t>(images[at + 2])});
  return out;
}

void check_episode(const Episode& ep, int64_t ways, int64_t shots, int64_t query) {
  ASSERT_EQ(ep.support.size(), static_cast<size_t>(ways * shots * 4));
  ASSERT_EQ(ep.query.size(), static_cast<size_t>(ways * query * 4));
  ASSERT_EQ(ep.support_labels.size(), static_cast<size_t>(ways * shots));
  ASSERT_EQ(ep.query_labels.size(), static_cast<size_t>(ways * query));
  const std::vector<Drawn> s = decode(ep.support), q = decode(ep.query);
  std::vector<int64_t> class_of(static_cast<size_t>(ways), -1);
  for (int64_t k = 0; k < ways; ++k) {
    std::set<int64_t> imgs;
    for (int64_t j = 0; j < shots + query; ++j) {
      const bool sup = j < shots;
      const int64_t at = sup ? k * shots + j : k * query + j - shots;
      const Drawn d = sup ? s[at] : q[at];
      EXPECT_EQ(sup ? ep.support_labels[at] : ep.query_labels[at], k);  // class-major labels
      if (class_of[k] < 0) class_of[k] = d.cls;
      EXPECT_EQ(d.cls, class_of[k]) << "episode not class-major at way " << k;
      EXPECT_TRUE(imgs.insert(d.img).second) << "image repeated within class " << d.cls;
    }
  }
  EXPECT_EQ(std::set<int64_t>(class_of.begin(), class_of.end()).size(), static_cast<size_t>(ways))
      << "classes not distinct";
}

TEST(Omniglot, EpisodesAreClassMajorWithDistinctClassesAndImages) {
  const OmniglotSet set = coded_set({3, 6, 4}, 10);
  std::mt19937_64 rng(7);
  std::set<int64_t> seen;
  for (int rep = 0; rep < 200; ++rep) {
    const Episode ep = sample_episode(set, 5, 2, 3, false, rng);
    check_episode(ep, 5, 2, 3);
    for (const Drawn& d : decode(ep.support)) seen.insert(d.cls);
  }
  EXPECT_EQ(seen.size(), 13u);  // every class is reachable
  // Every image of a class can be used: shots + query == count.
  const Episode all = sample_episode(set, 13, 4, 6, false, rng);
  check_episode(all, 13, 4, 6);
}

TEST(Omniglot, WithinAlphabetEpisodesUseOneAlphabet) {
  const OmniglotSet set = coded_set({3, 6, 4}, 10);
  std::mt19937_64 rng(11);
  std::set<int64_t> alphabets;
  for (int rep = 0; rep < 200; ++rep) {
    const Episode ep = sample_episode(set, 4, 1, 2, true, rng);
    check_episode(ep, 4, 1, 2);
    std::set<int64_t> here;
    for (const Drawn& d : decode(ep.support)) here.insert(d.alphabet);
    for (const Drawn& d : decode(ep.query)) here.insert(d.alphabet);
    ASSERT_EQ(here.size(), 1u);
    alphabets.insert(*here.begin());
  }
  EXPECT_EQ(alphabets, (std::set<int64_t>{1, 2}));  // alphabet 0 has only 3 classes
}

TEST(Omniglot, EpisodesAreReproducibleFromTheSeed) {
  const OmniglotSet set = coded_set({5, 5}, 8);
  std::mt19937_64 a(3), b(3);
  const Episode x = sample_episode(set, 3, 2, 2, true, a), y = sample_episode(set, 3, 2, 2, true, b);
  EXPECT_EQ(x.support, y.support);
  EXPECT_EQ(x.query, y.query);
}

TEST(Omniglot, ImpossibleEpisodesThrow) {
  const OmniglotSet set = coded_set({3, 6, 4}, 10);
  std::mt19937_64 rng(1);
  testing::expect_runtime_error([&] { sample_episode(set, 7, 1, 1, true, rng); }, {"no alphabet has 7 classes"});
  testing::expect_runtime_error([&] { sample_episode(set, 14, 1, 1, false, rng); }, {"14-way"});
  testing::expect_runtime_error([&] { sample_episode(set, 2, 5, 6, false, rng); }, {"10 images", "5 shots + 6 query"});
  testing::expect_runtime_error([&] { sample_episode(set, 0, 1, 1, false, rng); }, {"ways 0"});
}

TEST(Omniglot, EpisodeFromRealCharacters) {
  const OmniglotSet& s = small1();
  std::mt19937_64 rng(42);
  const Episode ep = sample_episode(s, 20, 1, 5, true, rng);
  ASSERT_EQ(ep.support.size(), 20u * 1 * 28 * 28);
  ASSERT_EQ(ep.query.size(), 20u * 5 * 28 * 28);
  EXPECT_EQ(ep.query_labels[5 * 7], 7);
  // Each support image is an image of some class from a single alphabet.
  std::set<std::string> alphabets;
  for (int64_t k = 0; k < 20; ++k) {
    const float* img = ep.support.data() + k * 28 * 28;
    bool found = false;
    for (size_t c = 0; c < s.classes.size() && !found; ++c)
      for (int64_t i = 0; i < 20 && !found; ++i)
        if (std::equal(img, img + 28 * 28, s.image_ptr(static_cast<int64_t>(c), i))) {
          found = true;
          alphabets.insert(s.classes[c].alphabet);
        }
    EXPECT_TRUE(found) << k;
  }
  EXPECT_EQ(alphabets.size(), 1u);
  testing::expect_runtime_error([&] { sample_episode(s, 20, 15, 6, false, rng); }, {"20 images"});
}

}  // namespace
}  // namespace metagrad

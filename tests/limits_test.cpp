// Resource limits of the readers: a declared size that is huge, overflows int64 or nests too
// deep is a clear error before anything is allocated (graph text, checkpoints, IDX headers,
// model descriptions).
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <fstream>

#include "meta/data/idx.h"
#include "meta/learn/fewshot.h"
#include "meta/learn/maml.h"
#include "meta/learn/model_description.h"
#include "metagrad/checkpoint.h"
#include "metagrad/error.h"
#include "metagrad/serialize.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

std::string parse_error(const std::string& body) {
  return testing::error_of([&] { parse_text("graph {\n" + body + "\n}\n"); });
}

TEST(Limits, GraphTextRefusesHugeAndOverflowingTypes) {
  std::string e = parse_error("  %0 = input \"x\" : f32[1000000,1000000]");  // 10^12 elements
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  EXPECT_NE(e.find("type f32[1000000,1000000] is too large"), std::string::npos) << e;
  // Each dimension is accepted by itself; their product overflows int64.
  e = parse_error("  %0 = param \"w\" : f32[1099511627776,1099511627776,1099511627776] init zeros {}");
  EXPECT_NE(e.find("is too large: more than 4294967296 elements"), std::string::npos) << e;
  // A constant's declared size is refused before its values are read.
  e = parse_error("  %0 = const : f32[100000,100000] {1}");
  EXPECT_NE(e.find("too large"), std::string::npos) << e;
  std::string deep = "  %0 = input \"x\" : f32[1";
  for (int i = 0; i < 40; ++i) deep += ",1";
  e = parse_error(deep + "]");
  EXPECT_NE(e.find("more than 16 dimensions"), std::string::npos) << e;
  // Zero-sized and at-the-limit types still parse.
  EXPECT_EQ(parse_error("  %0 = input \"x\" : f32[0,1099511627776]"), "");
  EXPECT_EQ(parse_error("  %0 = input \"x\" : f32[65536,65536]"), "");
}

TEST(Limits, ElementCountsNeverOverflowSilently) {
  EXPECT_EQ(num_elements({1 << 20, 1 << 20}), int64_t(1) << 40);
  EXPECT_NE(testing::error_of([] { num_elements({int64_t(1) << 40, int64_t(1) << 40}); }).find("more elements than int64"),
            std::string::npos);
  EXPECT_NE(tensor_size_problem({int64_t(1) << 40, int64_t(1) << 40}), "");
  EXPECT_NE(tensor_size_problem({-1}), "");
  EXPECT_EQ(tensor_size_problem({2, 3}), "");
}

template <class T>
void put(std::string& b, T v) {
  b.append(reinterpret_cast<const char*>(&v), sizeof v);
}

TEST(Limits, CheckpointWithAnImpossibleShapeIsRefusedBeforeReadingValues) {
  Graph g;
  g.add_parameter("w", {DType::f32, {2}}, "zeros", {});
  ParamStore store;
  store.ensure(g);
  std::string b = "MGCKPT\r\n";
  put(b, uint32_t(1));
  put(b, uint32_t(1));
  put(b, uint32_t(1));
  b += "w";
  put(b, uint32_t(3));
  for (int i = 0; i < 3; ++i) put(b, int64_t(1) << 40);  // the product overflows int64
  put(b, uint32_t(crc32(0, reinterpret_cast<const Bytef*>(b.data()), uInt(b.size()))));
  const std::string path = ::testing::TempDir() + "metagrad_limits_ckpt";
  std::ofstream(path, std::ios::binary).write(b.data(), std::streamsize(b.size()));
  testing::expect_runtime_error([&] { load_checkpoint(store, path); }, {path, "'w'", "impossible shape"});
  EXPECT_EQ(store.data("w")[0], 0.0f) << "the store is untouched";
}

TEST(Limits, IdxHeaderWhoseSizeWrapsAroundIsRefused) {
  auto be = [](std::string& b, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b += char((v >> s) & 0xff);
  };
  // 2 images of 2^31 x 2^32 pixels: 2^64 bytes, which wraps to 0 and would match an empty body.
  std::string im, lb;
  be(im, 0x803), be(im, 2), be(im, 0x80000000u), be(im, 0xffffffffu);
  be(lb, 0x801), be(lb, 2);
  lb += std::string(2, '\0');
  const std::string ip = ::testing::TempDir() + "metagrad_limits_images", lp = ::testing::TempDir() + "metagrad_limits_labels";
  std::ofstream(ip, std::ios::binary) << im;
  std::ofstream(lp, std::ios::binary) << lb;
  testing::expect_runtime_error([&] { load_idx(ip, lp); }, {ip, "beyond 4294967296 elements"});
}

TEST(Limits, ModelDescriptionFieldsAreCheckedBeforeAModelIsBuilt) {
  const std::string ok = R"({"algo": "maml", "ways": 5, "shots": 1, "query": 5, "meta_batch": 2, "inner_steps": 1,
      "inner_lr": 0.4, "meta_lr": 0.001, "metric_rank": 8, "filters": 4, "blocks": 4, "image": 28, "seed": 1})";
  const FewShotConfig m = parse_model_description(ok, "m.json");
  EXPECT_EQ(m.ways, 5);
  EXPECT_EQ(m.net.image, 28);
  auto with = [&](const std::string& key, const std::string& value) {
    nlohmann::json j = nlohmann::json::parse(ok);
    j[key] = nlohmann::json::parse(value);
    return testing::error_of([&] { parse_model_description(j.dump(), "m.json"); });
  };
  EXPECT_NE(with("image", "100000").find("\"image\" is 100000, expected an integer in [1, 4096]"), std::string::npos);
  EXPECT_NE(with("ways", "5.5").find("\"ways\" is 5.5"), std::string::npos);
  EXPECT_NE(with("ways", "1e300").find("\"ways\""), std::string::npos);
  EXPECT_NE(with("shots", "-1").find("\"shots\" is -1"), std::string::npos);
  EXPECT_NE(with("seed", "-1").find("\"seed\""), std::string::npos);
  EXPECT_NE(with("inner_lr", "\"fast\"").find("\"inner_lr\""), std::string::npos);
  EXPECT_NE(with("algo", "\"sgd\"").find("expected one of"), std::string::npos);
  EXPECT_NE(with("blocks", "16").find("leave nothing of a 28-pixel image"), std::string::npos);
  // Each count within its bound, their product beyond the size of a tensor.
  nlohmann::json big = nlohmann::json::parse(ok);
  big["meta_batch"] = 1000, big["ways"] = 1000, big["query"] = 1000, big["image"] = 64;
  const std::string e = testing::error_of([&] { parse_model_description(big.dump(), "m.json"); });
  EXPECT_NE(e.find("beyond the size limit"), std::string::npos) << e;
  EXPECT_NE(testing::error_of([] { parse_model_description("[1, 2]", "m.json"); }).find("m.json: not a valid model"),
            std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_model_description("{\"algo\": ", "m.json"); }).find("m.json"), std::string::npos);
}

// Found by fuzz_model_description: a seed above 2^63 / 64 overflowed int64 while deriving the
// initialisers' seeds (UBSan: signed integer overflow in convnet.cpp).
TEST(Limits, FuzzRegressionHugeSeedBuildsAModel) {
  const std::string text = R"({"algo": "protonet-metric", "ways": 2, "shots": 1, "query": 5, "meta_batch": 2,
      "inner_steps": 1, "inner_lr": 0.4, "meta_lr": 0.001, "metric_rank": 0, "filters": 1, "blocks": 2, "image": 16,
      "seed": 14846744073709551615})";
  const FewShotConfig m = parse_model_description(text, "crash.json");
  EXPECT_EQ(m.net.seed, 14846744073709551615ull);
  ParamStore store;
  EXPECT_NO_THROW(store.ensure(build_fewshot_step(m)));
  FewShotConfig maml = m;
  maml.algo = "metasgd";
  EXPECT_NO_THROW(build_fewshot_step(maml));
  Graph g;
  EXPECT_EQ(sinusoid_mlp_params(g, 4, ~uint64_t(0)).size(), 6u);
}

}  // namespace
}  // namespace metagrad

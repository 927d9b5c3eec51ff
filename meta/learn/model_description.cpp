// Model descriptions: written from a FewShotConfig, read back with every field checked.
#include "meta/learn/model_description.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "metagrad/error.h"
#include "metagrad/types.h"

namespace metagrad {

nlohmann::json model_description(const FewShotConfig& m) {
  return {{"algo", m.algo},         {"ways", m.ways},         {"shots", m.shots},       {"query", m.query},
          {"meta_batch", m.meta_batch}, {"inner_steps", m.inner_steps}, {"inner_lr", m.inner_lr},
          {"meta_lr", m.meta_lr},   {"metric_rank", m.metric_rank}, {"filters", m.net.filters},
          {"blocks", m.net.blocks}, {"image", m.net.image},   {"seed", m.net.seed}};
}

namespace {

struct Fields {
  const nlohmann::json& j;
  const std::string& where;

  const nlohmann::json& at(const char* key) const {
    auto it = j.find(key);
    if (it == j.end()) throw RuntimeError(fmt::format("{}: not a valid model description (no \"{}\")", where, key));
    return *it;
  }
  // Integers only (a float such as 1e300 would not convert), within [lo, hi].
  int64_t count(const char* key, int64_t lo, int64_t hi) const {
    const nlohmann::json& v = at(key);
    const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() <= uint64_t(hi) && lo <= int64_t(v.get<uint64_t>())
                          : v.is_number_integer() ? v.get<int64_t>() >= lo && v.get<int64_t>() <= hi
                                                  : false;
    if (!in_range)
      throw RuntimeError(fmt::format("{}: \"{}\" is {}, expected an integer in [{}, {}]", where, key, v.dump(), lo, hi));
    return v.get<int64_t>();
  }
  double rate(const char* key) const {
    const nlohmann::json& v = at(key);
    if (!v.is_number() || !std::isfinite(v.get<double>()))
      throw RuntimeError(fmt::format("{}: \"{}\" is {}, expected a finite number", where, key, v.dump()));
    return v.get<double>();
  }
};

}  // namespace

FewShotConfig parse_model_description(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw RuntimeError(fmt::format("{}: not a valid model description ({})", where, e.what()));
  }
  if (!j.is_object()) throw RuntimeError(fmt::format("{}: not a valid model description (not a JSON object)", where));
  const Fields f{j, where};
  FewShotConfig m;
  const nlohmann::json& algo = f.at("algo");
  const auto& names = fewshot_algorithms();
  if (!algo.is_string() || std::find(names.begin(), names.end(), algo.get<std::string>()) == names.end())
    throw RuntimeError(fmt::format("{}: \"algo\" is {}, expected one of: {}", where, algo.dump(), fmt::join(names, ", ")));
  m.algo = algo.get<std::string>();
  // Bounds far above any model we train, low enough that products of them cannot overflow.
  m.ways = f.count("ways", 2, 1000);
  m.shots = f.count("shots", 1, 1000);
  m.query = f.count("query", 1, 1000);
  m.meta_batch = f.count("meta_batch", 1, 1000);
  m.inner_steps = f.count("inner_steps", 0, 1000);
  m.inner_lr = f.rate("inner_lr");
  m.meta_lr = f.rate("meta_lr");
  m.metric_rank = f.count("metric_rank", 0, 4096);
  m.net.filters = f.count("filters", 1, 4096);
  m.net.blocks = f.count("blocks", 1, 16);
  m.net.image = f.count("image", 1, 4096);
  const nlohmann::json& seed = f.at("seed");
  if (!seed.is_number_unsigned() && !(seed.is_number_integer() && seed.get<int64_t>() >= 0))
    throw RuntimeError(fmt::format("{}: \"seed\" is {}, expected a non-negative integer", where, seed.dump()));
  m.net.seed = seed.get<uint64_t>();
  if ((m.net.image >> m.net.blocks) < 1)
    throw RuntimeError(fmt::format("{}: {} blocks of 2x2 pooling leave nothing of a {}-pixel image", where,
                                   m.net.blocks, m.net.image));
  // The largest tensors a step builds: the query batch and the first block's activations.
  const int64_t limit = kMaxTensorElements;
  const int64_t images = m.meta_batch * m.ways * std::max(m.shots, m.query);
  const int64_t side2 = m.net.image * m.net.image;
  if (images > limit / side2 || images * side2 > limit / m.net.filters)
    throw RuntimeError(fmt::format("{}: {} images of {}x{} pixels through {} filters is beyond the size limit of a "
                                   "tensor ({} elements)",
                                   where, images, m.net.image, m.net.image, m.net.filters, limit));
  return m;
}

}  // namespace metagrad

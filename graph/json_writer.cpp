// JSON writer of graphs (nlohmann::json), for tools that want the graph without a parser.
#include <nlohmann/json.hpp>

#include <cmath>

#include "graph/op_def.h"
#include "metagrad/serialize.h"

namespace metagrad {

namespace {
using nlohmann::json;

// JSON has no inf/nan; write them as the strings "inf", "-inf", "nan" rather than lose them as null.
json number_json(double d) {
  if (std::isfinite(d)) return d;
  return std::isnan(d) ? "nan" : d > 0 ? "inf" : "-inf";
}
json numbers_json(const std::vector<double>& v) {
  json a = json::array();
  for (double d : v) a.push_back(number_json(d));
  return a;
}
json attr_json(const AttrValue& v) {
  switch (attr_kind(v)) {
    case AttrKind::Int: return std::get<int64_t>(v);
    case AttrKind::Float: return number_json(std::get<double>(v));
    case AttrKind::Ints: return std::get<std::vector<int64_t>>(v);
    case AttrKind::Floats: return numbers_json(std::get<std::vector<double>>(v));
    case AttrKind::String: return std::get<std::string>(v);
  }
  return nullptr;
}
json type_json(const TensorType& t) { return {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}}; }
json value_json(Value v) { return json::array({v.node, v.index}); }

json graph_json(const Graph& g) {
  json j;
  j["nodes"] = json::array();
  for (const Node& n : g.nodes()) {
    json node{{"id", n.id}, {"kind", node_kind_name(n.kind)}, {"name", n.name}};
    node["op"] = n.kind == NodeKind::Op ? json(n.op->name) : json(nullptr);
    node["inputs"] = json::array();
    for (Value v : n.inputs) node["inputs"].push_back(value_json(v));
    node["attrs"] = json::object();
    for (const auto& [k, v] : n.attrs) node["attrs"][k] = attr_json(v);
    node["outputs"] = json::array();
    for (const auto& t : n.outputs) node["outputs"].push_back(type_json(t));
    if (n.kind == NodeKind::Parameter) {
      node["init"] = n.init;
      node["trainable"] = n.trainable;
    }
    if (n.kind == NodeKind::Constant) node["data"] = numbers_json(n.data);
    if (n.body) node["body"] = graph_json(*n.body);  // a loop's body, as a graph of its own
    j["nodes"].push_back(std::move(node));
  }
  j["outputs"] = json::array();
  for (const auto& o : g.outputs()) j["outputs"].push_back({{"name", o.name}, {"value", value_json(o.value)}});
  j["updates"] = json::array();
  for (const auto& u : g.updates())
    j["updates"].push_back({{"param", g.node(u.param).name}, {"param_id", u.param}, {"value", value_json(u.value)}});
  return j;
}
}  // namespace

std::string to_json(const Graph& g) {
  json j = graph_json(g);
  // Names are arbitrary bytes; invalid UTF-8 is replaced rather than thrown on.
  return j.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace metagrad

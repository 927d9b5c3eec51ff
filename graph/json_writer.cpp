// JSON writer of graphs (nlohmann::json).
#include <nlohmann/json.hpp>

#include "graph/op_def.h"
#include "graph/serialize.h"

namespace metagrad {

namespace {
nlohmann::json attr_json(const AttrValue& v) {
  return std::visit([](const auto& x) { return nlohmann::json(x); }, v);
}
nlohmann::json type_json(const TensorType& t) { return {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}}; }
}  // namespace

std::string to_json(const Graph& g) {
  nlohmann::json j;
  j["nodes"] = nlohmann::json::array();
  for (const Node& n : g.nodes()) {
    nlohmann::json node{{"id", n.id}, {"kind", node_kind_name(n.kind)}, {"name", n.name}};
    if (n.kind == NodeKind::Op) node["op"] = n.op->name;
    node["inputs"] = nlohmann::json::array();
    for (Value v : n.inputs) node["inputs"].push_back({v.node, v.index});
    node["attrs"] = nlohmann::json::object();
    for (const auto& [k, v] : n.attrs) node["attrs"][k] = attr_json(v);
    node["outputs"] = nlohmann::json::array();
    for (const auto& t : n.outputs) node["outputs"].push_back(type_json(t));
    if (n.kind == NodeKind::Parameter) {
      node["init"] = n.init;
      node["trainable"] = n.trainable;
    }
    if (n.kind == NodeKind::Constant) node["data"] = n.data;
    j["nodes"].push_back(node);
  }
  j["outputs"] = nlohmann::json::array();
  for (const auto& o : g.outputs()) j["outputs"].push_back({{"name", o.name}, {"value", {o.value.node, o.value.index}}});
  j["updates"] = nlohmann::json::array();
  for (const auto& u : g.updates())
    j["updates"].push_back({{"param", g.node(u.param).name}, {"param_id", u.param}, {"value", {u.value.node, u.value.index}}});
  return j.dump(1) + "\n";
}

}  // namespace metagrad

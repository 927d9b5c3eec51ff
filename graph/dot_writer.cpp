// Graphviz DOT writer: one box per node, edges labelled with types, outputs and updates marked,
// fused elementwise kernels drawn as clusters of the ops they run.
#include <fmt/format.h>

#include <sstream>

#include "graph/op_def.h"
#include "metagrad/serialize.h"

namespace metagrad {

namespace {
// DOT strings use the same escapes as the text IR; newlines become DOT's "\n".
std::string dot_label(const std::string& s) { return quote(s); }

// The nodes of `g` with ids prefixed by `p` ("n" at the top, "n7b" in the body of loop %7).
void write_nodes(std::ostringstream& out, const Graph& g, const std::string& p) {
  for (const Node& n : g.nodes()) {
    std::string what = n.kind == NodeKind::Op ? n.op->name : node_kind_name(n.kind);
    if (n.kind == NodeKind::Parameter && !n.trainable) what += " (state)";
    std::string types;
    for (size_t i = 0; i < n.outputs.size(); ++i) types += (i ? ", " : "") + type_str(n.outputs[i]);
    // Small constants show their values; larger ones only their type.
    if (n.kind == NodeKind::Constant && n.data.size() <= 4) {
      types += " =";
      for (double d : n.data) types += fmt::format(" {}", d);
    }
    std::string label = n.name.empty() ? fmt::format("%{} {}\n{}", n.id, what, types)
                                       : fmt::format("%{} {} \"{}\"\n{}", n.id, what, n.name, types);
    std::string shape = n.kind == NodeKind::Input ? "ellipse" : n.kind == NodeKind::Parameter ? "cylinder"
                        : n.kind == NodeKind::Constant ? "plaintext" : "box";
    if (n.kind == NodeKind::Op && n.op->name == "fused_elementwise") {
      // A fused kernel is a cluster holding one small node per op it runs.
      out << fmt::format("  subgraph cluster_{}{} {{\n    label={};\n    style=rounded;\n", p, n.id,
                         dot_label(fmt::format("fused %{}", n.id)));
      std::string ops = attr_string(n.attrs, "ops");
      size_t k = 0, start = 0;
      std::string prev;
      while (start <= ops.size()) {
        size_t end = ops.find(',', start);
        if (end == std::string::npos) end = ops.size();
        std::string id = fmt::format("{}{}_{}", p, n.id, k++);
        out << fmt::format("    {} [label={}, shape=box, style=dashed];\n", id, dot_label(ops.substr(start, end - start)));
        if (!prev.empty()) out << fmt::format("    {} -> {} [style=dotted];\n", prev, id);
        prev = id;
        start = end + 1;
      }
      out << fmt::format("    {}{} [label={}, shape=box, style=bold];\n  }}\n", p, n.id, dot_label(label));
      out << fmt::format("  {} -> {}{} [style=dotted];\n", prev, p, n.id);
    } else if (n.body) {
      // A loop is a cluster holding its body; the loop node itself sits inside it, and the body's
      // outputs point at it.
      std::string bp = fmt::format("{}{}b", p, n.id);
      out << fmt::format("  subgraph cluster_{}{} {{\n    label={};\n    style=dashed;\n", p, n.id,
                         dot_label(fmt::format("loop %{} body", n.id)));
      write_nodes(out, *n.body, bp);
      out << fmt::format("    {}{} [label={}, shape=box3d];\n  }}\n", p, n.id, dot_label(label));
      for (const auto& o : n.body->outputs())
        out << fmt::format("  {}{} -> {}{} [style=dotted, label={}];\n", bp, o.value.node, p, n.id, dot_label(o.name));
    } else {
      out << fmt::format("  {}{} [label={}, shape={}];\n", p, n.id, dot_label(label), shape);
    }
    for (Value v : n.inputs)
      out << fmt::format("  {}{} -> {}{} [label={}];\n", p, v.node, p, n.id, dot_label(type_str(g.type(v))));
  }
}

}  // namespace

std::string to_dot(const Graph& g) {
  std::ostringstream out;
  // newrank: Graphviz 2.43's default ranking fails ("trouble in init_rank") on some graphs whose
  // fused clusters have edges across them; global ranking lays them out.
  out << "digraph metagrad {\n  rankdir=TB;\n  newrank=true;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n"
      << "  edge [fontname=\"monospace\", fontsize=8];\n";
  write_nodes(out, g, "n");
  for (size_t i = 0; i < g.outputs().size(); ++i) {
    const auto& o = g.outputs()[i];
    out << fmt::format("  out{} [label={}, shape=doubleoctagon];\n  n{} -> out{};\n", i, dot_label("output " + o.name),
                       o.value.node, i);
  }
  for (const auto& u : g.updates())
    out << fmt::format("  n{} -> n{} [style=dashed, color=blue, label=\"update\", constraint=false];\n", u.value.node, u.param);
  out << "}\n";
  return out.str();
}

}  // namespace metagrad

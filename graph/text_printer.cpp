// The text IR printer (the format parse_text reads back).
#include <fmt/format.h>

#include <cctype>
#include <sstream>

#include "graph/op_def.h"
#include "metagrad/serialize.h"

namespace metagrad {

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string value_str(Value v) { return v.index == 0 ? fmt::format("%{}", v.node) : fmt::format("%{}.{}", v.node, v.index); }

namespace {

bool is_identifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}

// Initializer names and attribute keys are bare words unless they need quotes.
std::string word_str(const std::string& s) { return is_identifier(s) ? s : quote(s); }

// attr_str's forms, except that strings are escaped like names so any text round-trips.
std::string attrs_str(const Attrs& a) {
  std::string s = "{";
  for (const auto& [k, v] : a)
    s += (s.size() > 1 ? ", " : "") + word_str(k) + "=" +
         (attr_kind(v) == AttrKind::String ? quote(std::get<std::string>(v)) : attr_str(v));
  return s + "}";
}

std::string types_str(const std::vector<TensorType>& ts) {
  std::string s;
  for (size_t i = 0; i < ts.size(); ++i) s += (i ? ", " : "") + type_str(ts[i]);
  return s;
}

void print_graph(std::ostringstream& out, const Graph& g, const std::string& pad);

// A loop's body prints as a nested graph after the attributes and name, indented one level.
void print_body(std::ostringstream& out, const Graph& body, const std::string& pad) {
  out << " body ";
  print_graph(out, body, pad + "  ");
}

void print_graph(std::ostringstream& out, const Graph& g, const std::string& pad) {
  out << "graph {\n";
  for (const Node& n : g.nodes()) {
    out << pad << "  %" << n.id << " = ";
    switch (n.kind) {
      case NodeKind::Input:
        out << "input " << quote(n.name) << " : " << type_str(n.type());
        break;
      case NodeKind::Parameter:
        out << "param " << quote(n.name) << " : " << type_str(n.type()) << " init " << word_str(n.init) << " "
            << attrs_str(n.attrs) << (n.trainable ? "" : " state");
        break;
      case NodeKind::Constant: {
        out << "const " << (n.name.empty() ? "" : quote(n.name) + " ") << ": " << type_str(n.type()) << " {";
        for (size_t i = 0; i < n.data.size(); ++i) out << (i ? ", " : "") << fmt::format("{}", n.data[i]);
        out << "}";
        break;
      }
      case NodeKind::Op: {
        out << n.op->name << "(";
        for (size_t i = 0; i < n.inputs.size(); ++i) out << (i ? ", " : "") << value_str(n.inputs[i]);
        out << ")";
        if (!n.attrs.empty()) out << " " << attrs_str(n.attrs);
        if (!n.name.empty()) out << " " << quote(n.name);
        if (n.body) print_body(out, *n.body, pad);
        out << " : " << types_str(n.outputs);
        break;
      }
    }
    out << "\n";
  }
  for (const auto& o : g.outputs()) out << pad << "  output " << quote(o.name) << " = " << value_str(o.value) << "\n";
  for (const auto& u : g.updates())
    out << pad << "  update " << quote(g.node(u.param).name) << " = " << value_str(u.value) << "\n";
  out << pad << "}";
}

}  // namespace

std::string to_text(const Graph& g) {
  std::ostringstream out;
  print_graph(out, g, "");
  out << "\n";
  return out.str();
}

}  // namespace metagrad

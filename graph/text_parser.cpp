// The text IR parser: a hand-written scanner and recursive-descent reader whose errors name the
// line and column and what was expected there.
#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "graph/op_def.h"
#include "metagrad/error.h"
#include "metagrad/serialize.h"

namespace metagrad {

namespace {

struct Pos {
  int line = 1, col = 1;
};

bool is_word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
// Numbers in attributes and constants: digits, sign, point, exponent, and inf/nan.
bool is_number_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '+'; }

class Reader {
 public:
  explicit Reader(const std::string& text) : s_(text) {}

  [[noreturn]] static void fail_at(Pos p, const std::string& msg) {
    throw GraphError(fmt::format("line {}, column {}: {}", p.line, p.col, msg));
  }
  [[noreturn]] void fail(const std::string& msg) { fail_at(here(), msg); }
  // "expected X, found Y" at the next token.
  [[noreturn]] void expected(const std::string& what) { fail(fmt::format("expected {}, found {}", what, found())); }

  // Position of the next token (after blanks and comments).
  Pos here() {
    skip();
    return pos_;
  }
  bool at_end() {
    skip();
    return i_ >= s_.size();
  }
  char peek() {
    skip();
    return i_ < s_.size() ? s_[i_] : '\0';
  }
  bool accept(char c) {
    if (peek() != c) return false;
    advance();
    return true;
  }
  void expect(char c) {
    if (!accept(c)) expected(fmt::format("'{}'", c));
  }
  bool at_word() { return is_word_char(peek()) && !is_digit(peek()); }
  // Identifiers: op names, keywords, dtypes, initializer and attribute names.
  std::string word(const std::string& what) {
    if (!at_word()) expected(what);
    size_t b = i_;
    while (i_ < s_.size() && is_word_char(s_[i_])) advance();
    return s_.substr(b, i_ - b);
  }
  void keyword(const std::string& k) {
    Pos p = here();
    if (!at_word()) expected(fmt::format("'{}'", k));
    std::string w = word("");
    if (w != k) fail_at(p, fmt::format("expected '{}', found '{}'", k, w));
  }
  std::string quoted(const std::string& what) {
    if (peek() != '"') expected(what);
    Pos start = pos_;
    advance();
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"' && s_[i_] != '\n') {
      if (s_[i_] == '\\') {
        advance();
        char e = i_ < s_.size() ? s_[i_] : '\0';
        if (e == '"' || e == '\\') out += e;
        else if (e == 'n') out += '\n';
        else fail("unknown escape in string (expected \\\", \\\\ or \\n)");
      } else {
        out += s_[i_];
      }
      advance();
    }
    if (i_ >= s_.size() || s_[i_] != '"') fail_at(start, "unterminated string");
    advance();
    return out;
  }
  // A non-negative integer made of digits only (node ids, output indices, dimensions).
  int64_t count(const std::string& what) {
    if (!is_digit(peek())) expected(what);
    Pos p = pos_;
    int64_t v = 0;
    while (i_ < s_.size() && is_digit(s_[i_])) {
      if (v > (int64_t(1) << 40)) fail_at(p, fmt::format("{} is too large", what));
      v = v * 10 + (s_[i_] - '0');
      advance();
    }
    return v;
  }
  // The text of a number: sign, digits, point, exponent or inf/nan, checked by the caller.
  std::string number_token(const std::string& what) {
    char c = peek();
    if (!is_number_char(c)) expected(what);
    size_t b = i_;
    while (i_ < s_.size() && is_number_char(s_[i_])) advance();
    return s_.substr(b, i_ - b);
  }
  static bool is_float_text(const std::string& t) { return t.find_first_of(".eEn") != std::string::npos; }
  double real(const std::string& what) {
    Pos p = here();
    std::string t = number_token(what);
    char* end = nullptr;
    double v = std::strtod(t.c_str(), &end);
    if (*end) fail_at(p, fmt::format("expected {}, found '{}'", what, t));
    check_finite(p, t, v);
    return v;
  }

  // %3 or %3.1; the reference must name an existing node's output.
  Value value(const Graph& g, const std::string& what) {
    if (peek() != '%') expected(what);
    Pos p = pos_;
    advance();
    int64_t node = count("a node number after '%'");
    int64_t index = 0;
    if (i_ < s_.size() && s_[i_] == '.') {
      advance();
      index = count("an output number after '.'");
    }
    if (node >= int64_t(g.size()))
      fail_at(p, fmt::format("%{} is not an earlier node ({} nodes precede it)", node, g.size()));
    if (index >= int64_t(g.node(int(node)).outputs.size()))
      fail_at(p, fmt::format("{} has no output {}", g.describe(int(node)), index));
    return {int(node), int(index)};
  }
  TensorType type() {
    Pos p = here();
    if (!at_word()) expected("a type such as f32[2,3]");
    std::string dt = word("a dtype");
    DType d = DType::f32;
    try {
      d = parse_dtype(dt);
    } catch (const GraphError& e) {
      fail_at(p, e.what());
    }
    expect('[');
    Shape s;
    if (!accept(']')) {
      do {
        s.push_back(count("a dimension"));
        if (s.size() > kMaxDeclaredRank) fail_at(p, fmt::format("type has more than {} dimensions", kMaxDeclaredRank));
      } while (accept(','));
      expect(']');
    }
    check_size(p, {d, s});
    return {d, s};
  }
  AttrValue attr_value() {
    char c = peek();
    if (c == '"') return quoted("a string");
    if (c != '[') {
      Pos p = pos_;
      std::string t = number_token("an attribute value (number, list or string)");
      return is_float_text(t) ? AttrValue(number_of(p, t)) : AttrValue(integer_of(p, t));
    }
    advance();
    if (accept('.')) {  // "[.]": the empty float list
      expect(']');
      return std::vector<double>{};
    }
    std::vector<std::pair<Pos, std::string>> items;
    if (!accept(']')) {
      do {
        Pos p = here();
        items.push_back({p, number_token("a number")});
      } while (accept(','));
      expect(']');
    }
    bool floats = false;
    for (const auto& [p, t] : items) floats |= is_float_text(t);
    if (floats) {
      std::vector<double> v;
      for (const auto& [p, t] : items) v.push_back(number_of(p, t));
      return v;
    }
    std::vector<int64_t> v;
    for (const auto& [p, t] : items) v.push_back(integer_of(p, t));
    return v;
  }
  Attrs attrs() {
    Attrs a;
    expect('{');
    if (accept('}')) return a;
    do {
      Pos p = here();
      std::string k = peek() == '"' ? quoted("") : word("an attribute name");
      if (a.count(k)) fail_at(p, fmt::format("attribute '{}' is given twice", k));
      expect('=');
      a[k] = attr_value();
    } while (accept(','));
    if (!accept('}')) expected("',' or '}' in the attribute list");
    return a;
  }

 private:
  void skip() {
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (c == '#') {
        while (i_ < s_.size() && s_[i_] != '\n') advance();
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        advance();
      } else {
        break;
      }
    }
  }
  void advance() {
    if (s_[i_] == '\n') ++pos_.line, pos_.col = 1;
    else ++pos_.col;
    ++i_;
  }
  std::string found() {
    skip();
    if (i_ >= s_.size()) return "the end of the text";
    size_t e = i_ + 1;
    if (is_number_char(s_[i_]) || s_[i_] == '_')
      while (e < s_.size() && (is_number_char(s_[e]) || s_[e] == '_')) ++e;
    return fmt::format("'{}'", s_.substr(i_, e - i_));
  }
  static double number_of(Pos p, const std::string& t) {
    char* end = nullptr;
    double v = std::strtod(t.c_str(), &end);
    if (*end) fail_at(p, fmt::format("expected a number, found '{}'", t));
    check_finite(p, t, v);
    return v;
  }
  // Infinities are written "inf"; a finite literal too large for a double is a mistake.
  static void check_finite(Pos p, const std::string& t, double v) {
    if (std::isinf(v) && t.find("inf") == std::string::npos) fail_at(p, fmt::format("number '{}' is out of range", t));
  }
  // Declared sizes are refused here, before a constant's values or a compiled arena are allocated.
  static void check_size(Pos p, const TensorType& t) {
    if (std::string why = tensor_size_problem(t.shape); !why.empty())
      fail_at(p, fmt::format("type {} is too large: {}", type_str(t), why));
  }
  static int64_t integer_of(Pos p, const std::string& t) {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(t.c_str(), &end, 10);
    if (*end) fail_at(p, fmt::format("expected an integer, found '{}'", t));
    if (errno == ERANGE) fail_at(p, fmt::format("integer '{}' is out of range", t));
    return v;
  }

  const std::string& s_;
  size_t i_ = 0;
  Pos pos_;
};

void parse_input(Reader& r, Graph& g) {
  std::string name = r.quoted("the input's name in quotes");
  r.expect(':');
  g.add_input(name, r.type());
}

void parse_param(Reader& r, Graph& g) {
  std::string name = r.quoted("the parameter's name in quotes");
  r.expect(':');
  TensorType t = r.type();
  r.keyword("init");
  std::string init = r.peek() == '"' ? r.quoted("") : r.word("an initializer name");
  Attrs a = r.attrs();
  bool trainable = true;
  if (r.at_word()) {  // the optional `state` marker, or the next statement's keyword
    Reader ahead = r;
    if (ahead.word("") == "state") {
      r.keyword("state");
      trainable = false;
    }
  }
  g.add_parameter(name, t, init, a, trainable);
}

void parse_const(Reader& r, Graph& g) {
  std::string name = r.peek() == '"' ? r.quoted("") : "";
  r.expect(':');
  Pos tp = r.here();
  TensorType t = r.type();
  r.expect('{');
  std::vector<double> data;
  if (!r.accept('}')) {
    do {
      Pos p = r.here();
      double v = r.real("a number");
      if (t.dtype == DType::i32 && (v != std::floor(v) || std::abs(v) > 2147483647.0))
        Reader::fail_at(p, fmt::format("i32 constant value {} is not a 32-bit integer", v));
      data.push_back(v);
    } while (r.accept(','));
    if (!r.accept('}')) r.expected("',' or '}' in the constant's values");
  }
  if (int64_t(data.size()) != t.numel())
    Reader::fail_at(tp, fmt::format("constant of type {} needs {} values, has {} values", type_str(t), t.numel(), data.size()));
  g.add_constant(t, std::move(data), name);
}

std::string types_str(const std::vector<TensorType>& ts) {
  std::string s;
  for (size_t i = 0; i < ts.size(); ++i) s += (i ? ", " : "") + type_str(ts[i]);
  return s;
}

std::shared_ptr<const Graph> parse_body(Reader& r, int depth);

void parse_op(Reader& r, Graph& g, const std::string& opname, Pos op_pos, Pos stmt, int depth) {
  if (!OpRegistry::get().find(opname)) Reader::fail_at(op_pos, fmt::format("unknown op '{}'", opname));
  r.expect('(');
  std::vector<Value> ins;
  if (!r.accept(')')) {
    do ins.push_back(r.value(g, "an input such as %3"));
    while (r.accept(','));
    if (!r.accept(')')) r.expected("',' or ')' after an input");
  }
  Attrs a = r.peek() == '{' ? r.attrs() : Attrs{};
  std::string name = r.peek() == '"' ? r.quoted("") : "";
  std::shared_ptr<const Graph> body = parse_body(r, depth);
  r.expect(':');
  std::vector<TensorType> types{r.type()};
  while (r.accept(',')) types.push_back(r.type());
  try {
    g.add_op_multi(opname, ins, a, name, std::move(body));
  } catch (const Error& e) {
    Reader::fail_at(stmt, e.what());
  }
  const auto& inferred = g.nodes().back().outputs;
  if (inferred != types)
    Reader::fail_at(stmt, fmt::format("{} infers {}, the text says {}", opname, types_str(inferred), types_str(types)));
}

// output "name" = %v   |   update "param" = %v
void parse_binding(Reader& r, Graph& g, const std::string& kw, Pos stmt) {
  std::string name = r.quoted(kw == "output" ? "the output's name in quotes" : "the parameter's name in quotes");
  r.expect('=');
  Value v = r.value(g, "a value such as %3");
  try {
    if (kw == "output") {
      g.add_output(name, v);
    } else {
      int p = g.find(name);
      if (p < 0 || g.node(p).kind != NodeKind::Parameter)
        Reader::fail_at(stmt, fmt::format("update of \"{}\", which is not a parameter", name));
      g.add_update(p, v);
    }
  } catch (const GraphError& e) {
    if (std::string(e.what()).rfind("line ", 0) == 0) throw;
    Reader::fail_at(stmt, e.what());
  } catch (const Error& e) {
    Reader::fail_at(stmt, e.what());
  }
}

// The statements of a graph up to and including its closing '}'. `depth` counts the loop
// bodies this graph is nested in.
void parse_statements(Reader& r, Graph& g, int depth) {
  while (!r.accept('}')) {
    if (r.at_end()) r.fail("missing '}' at the end of the graph");
    Pos stmt = r.here();
    if (r.peek() != '%') {
      if (!r.at_word()) r.expected("a node '%N = ...', 'output', 'update' or '}'");
      std::string kw = r.word("");
      if (kw != "output" && kw != "update")
        Reader::fail_at(stmt, fmt::format("expected a node '%N = ...', 'output', 'update' or '}}', found '{}'", kw));
      parse_binding(r, g, kw, stmt);
      continue;
    }
    r.accept('%');
    if (!std::isdigit(static_cast<unsigned char>(r.peek()))) r.expected("a node number after '%'");
    int64_t id = r.count("a node number");
    if (id != int64_t(g.size()) || r.peek() == '.')
      Reader::fail_at(stmt, fmt::format("expected node %{} (nodes are numbered densely in order), found %{}", g.size(), id));
    r.expect('=');
    Pos kind_pos = r.here();
    std::string kind = r.word("'input', 'param', 'const' or an op name");
    try {
      if (kind == "input") parse_input(r, g);
      else if (kind == "param") parse_param(r, g);
      else if (kind == "const") parse_const(r, g);
      else parse_op(r, g, kind, kind_pos, stmt, depth);
    } catch (const GraphError& e) {
      if (std::string(e.what()).rfind("line ", 0) == 0) throw;
      Reader::fail_at(stmt, e.what());
    } catch (const Error& e) {
      Reader::fail_at(stmt, e.what());
    }
  }
}

// `body graph { ... }` after an op's attributes and name: a loop's body, parsed like a graph.
// Nesting is bounded so that hostile text cannot exhaust the stack.
std::shared_ptr<const Graph> parse_body(Reader& r, int depth) {
  constexpr int kMaxBodyDepth = 16;
  if (!r.at_word()) return nullptr;
  Reader ahead = r;
  if (ahead.word("") != "body") return nullptr;
  Pos p = r.here();
  r.keyword("body");
  if (depth + 1 > kMaxBodyDepth) Reader::fail_at(p, fmt::format("loop bodies nest deeper than {}", kMaxBodyDepth));
  r.keyword("graph");
  r.expect('{');
  auto body = std::make_shared<Graph>();
  parse_statements(r, *body, depth + 1);
  try {
    verify(*body);
  } catch (const Error& e) {
    Reader::fail_at(p, fmt::format("body: {}", e.what()));
  }
  return body;
}

}  // namespace

Graph parse_text(const std::string& text) {
  Reader r(text);
  Graph g;
  r.keyword("graph");
  r.expect('{');
  parse_statements(r, g, 0);
  if (!r.at_end()) r.expected("the end of the text after the graph's '}'");
  verify(g);
  return g;
}

}  // namespace metagrad

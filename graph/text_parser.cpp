// The text IR parser: a small hand-written lexer and recursive-descent reader whose errors name
// the line and column.
#include <fmt/format.h>

#include <cctype>
#include <cstdlib>

#include "graph/error.h"
#include "graph/op_def.h"
#include "graph/serialize.h"

namespace metagrad {

namespace {

class Reader {
 public:
  explicit Reader(const std::string& text) : s_(text) {}

  [[noreturn]] void fail(const std::string& msg) const {
    throw GraphError(fmt::format("line {}, column {}: {}", line_, col_, msg));
  }
  // Errors found after a whole statement was read point at the statement's start.
  [[noreturn]] void fail_statement(const std::string& msg) const {
    throw GraphError(fmt::format("line {}, column {}: {}", stmt_line_, stmt_col_, msg));
  }
  void start_statement() {
    skip();
    stmt_line_ = line_, stmt_col_ = col_;
  }
  void skip() {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == '#') {
        while (pos_ < s_.size() && s_[pos_] != '\n') advance();
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        advance();
      } else {
        break;
      }
    }
  }
  bool at_end() {
    skip();
    return pos_ >= s_.size();
  }
  char peek() {
    skip();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }
  bool accept(char c) {
    if (peek() != c) return false;
    advance();
    return true;
  }
  void expect(char c) {
    if (!accept(c)) fail(fmt::format("expected '{}'{}", c, pos_ < s_.size() ? fmt::format(", found '{}'", s_[pos_]) : ", found end of text"));
  }
  std::string word() {
    skip();
    size_t b = pos_;
    while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_')) advance();
    if (b == pos_) fail("expected a word");
    return s_.substr(b, pos_ - b);
  }
  void keyword(const std::string& k) {
    std::string w = word();
    if (w != k) fail(fmt::format("expected '{}', found '{}'", k, w));
  }
  std::string quoted() {
    expect('"');
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      if (s_[pos_] == '\\') {
        advance();
        if (pos_ >= s_.size()) break;
        out += s_[pos_] == 'n' ? '\n' : s_[pos_];
      } else {
        out += s_[pos_];
      }
      advance();
    }
    if (pos_ >= s_.size()) fail("unterminated string");
    advance();
    return out;
  }
  std::string number_token() {
    skip();
    size_t b = pos_;
    while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '.' || s_[pos_] == '-' || s_[pos_] == '+'))
      advance();
    if (b == pos_) fail("expected a number");
    return s_.substr(b, pos_ - b);
  }
  int64_t integer() {
    std::string t = number_token();
    char* end = nullptr;
    long long v = std::strtoll(t.c_str(), &end, 10);
    if (*end) fail(fmt::format("'{}' is not an integer", t));
    return v;
  }
  double real() {
    std::string t = number_token();
    char* end = nullptr;
    double v = std::strtod(t.c_str(), &end);
    if (*end) fail(fmt::format("'{}' is not a number", t));
    return v;
  }
  Value value() {
    expect('%');
    Value v{int(integer()), 0};
    if (peek() == '.') {
      advance();
      v.index = int(integer());
    }
    return v;
  }
  TensorType type() {
    std::string dt = word();
    DType d;
    try {
      d = parse_dtype(dt);
    } catch (const GraphError& e) {
      fail(e.what());
    }
    expect('[');
    Shape s;
    if (!accept(']')) {
      do s.push_back(integer());
      while (accept(','));
      expect(']');
    }
    return {d, s};
  }
  static bool is_float_text(const std::string& t) { return t.find_first_of(".eEn") != std::string::npos; }
  AttrValue attr_value() {
    char c = peek();
    if (c == '"') return quoted();
    if (c == '[') {
      advance();
      if (accept('.')) {
        expect(']');
        return std::vector<double>{};
      }
      std::vector<std::string> items;
      if (!accept(']')) {
        do items.push_back(number_token());
        while (accept(','));
        expect(']');
      }
      bool floats = false;
      for (const auto& t : items) floats |= is_float_text(t);
      if (floats) {
        std::vector<double> v;
        for (const auto& t : items) v.push_back(std::strtod(t.c_str(), nullptr));
        return v;
      }
      std::vector<int64_t> v;
      for (const auto& t : items) v.push_back(std::strtoll(t.c_str(), nullptr, 10));
      return v;
    }
    std::string t = number_token();
    if (is_float_text(t)) return std::strtod(t.c_str(), nullptr);
    return int64_t(std::strtoll(t.c_str(), nullptr, 10));
  }
  Attrs attrs() {
    Attrs a;
    expect('{');
    if (accept('}')) return a;
    do {
      std::string k = word();
      expect('=');
      a[k] = attr_value();
    } while (accept(','));
    expect('}');
    return a;
  }

 private:
  void advance() {
    if (s_[pos_] == '\n') ++line_, col_ = 1;
    else ++col_;
    ++pos_;
  }
  const std::string& s_;
  size_t pos_ = 0;
  int line_ = 1, col_ = 1;
  int stmt_line_ = 1, stmt_col_ = 1;
};

}  // namespace

Graph parse_text(const std::string& text) {
  Reader r(text);
  Graph g;
  r.keyword("graph");
  r.expect('{');
  while (!r.accept('}')) {
    if (r.at_end()) r.fail("missing '}' at the end of the graph");
    r.start_statement();
    if (r.peek() != '%') {
      std::string kw = r.word();
      if (kw != "output" && kw != "update") r.fail(fmt::format("expected a node, 'output' or 'update', found '{}'", kw));
      std::string name = r.quoted();
      r.expect('=');
      Value v = r.value();
      if (v.node < 0 || size_t(v.node) >= g.size()) r.fail(fmt::format("{} \"{}\" refers to %{}, which does not exist", kw, name, v.node));
      try {
        if (kw == "output") {
          g.add_output(name, v);
        } else {
          int p = g.find(name);
          if (p < 0) r.fail(fmt::format("update of unknown parameter \"{}\"", name));
          g.add_update(p, v);
        }
      } catch (const Error& e) {
        r.fail_statement(e.what());
      }
      continue;
    }
    Value id = r.value();
    if (id.node != int(g.size()) || id.index != 0) r.fail(fmt::format("expected node %{}, found %{}", g.size(), id.node));
    r.expect('=');
    std::string kind = r.word();
    try {
      if (kind == "input") {
        std::string name = r.quoted();
        r.expect(':');
        g.add_input(name, r.type());
      } else if (kind == "param") {
        std::string name = r.quoted();
        r.expect(':');
        TensorType t = r.type();
        r.keyword("init");
        std::string init = r.word();
        Attrs a = r.attrs();
        bool trainable = true;
        if (r.peek() == 's') {
          r.keyword("state");
          trainable = false;
        }
        g.add_parameter(name, t, init, a, trainable);
      } else if (kind == "const") {
        std::string name = r.peek() == '"' ? r.quoted() : "";
        r.expect(':');
        TensorType t = r.type();
        r.expect('{');
        std::vector<double> data;
        if (!r.accept('}')) {
          do data.push_back(r.real());
          while (r.accept(','));
          r.expect('}');
        }
        if (int64_t(data.size()) != t.numel()) r.fail(fmt::format("constant of type {} has {} values", type_str(t), data.size()));
        g.add_constant(t, data, name);
      } else {
        if (!OpRegistry::get().find(kind)) r.fail(fmt::format("unknown op '{}'", kind));
        r.expect('(');
        std::vector<Value> ins;
        if (!r.accept(')')) {
          do {
            Value v = r.value();
            if (v.node < 0 || v.node >= id.node) r.fail(fmt::format("%{} is not an earlier node", v.node));
            ins.push_back(v);
          } while (r.accept(','));
          r.expect(')');
        }
        Attrs a = r.peek() == '{' ? r.attrs() : Attrs{};
        std::string name = r.peek() == '"' ? r.quoted() : "";
        r.expect(':');
        std::vector<TensorType> types{r.type()};
        while (r.accept(',')) types.push_back(r.type());
        g.add_op_multi(kind, ins, a, name);
        const auto& inferred = g.node(id.node).outputs;
        if (inferred != types) r.fail_statement(fmt::format("{} produces {}, the text says {}", kind, type_str(inferred[0]), type_str(types[0])));
      }
    } catch (const GraphError& e) {
      std::string msg = e.what();
      if (msg.rfind("line ", 0) == 0) throw;
      r.fail_statement(msg);
    } catch (const Error& e) {
      r.fail_statement(e.what());
    }
  }
  if (!r.at_end()) r.fail("text after the end of the graph");
  verify(g);
  return g;
}

}  // namespace metagrad

// Writers and the reader of graphs: a text IR that round-trips, Graphviz DOT and JSON.
#pragma once
#include <string>

#include "graph/graph.h"

namespace metagrad {

// print -> parse -> print is identical. Constants print all their values (exactly: shortest
// round-trip decimal form), parameters their initializer and attributes.
std::string to_text(const Graph& g);
// Throws GraphError naming the line (and column) at fault; the result passes verify().
Graph parse_text(const std::string& text);
// Graphviz: one node per graph node, labelled with op, name and type; edges carry types.
std::string to_dot(const Graph& g);
// {"nodes": [{"id", "kind", "op", "name", "inputs": [[node, index]...], "attrs", "outputs": [type...]}...],
//  "outputs": [{"name", "value"}], "updates": [{"param", "value"}]}
std::string to_json(const Graph& g);

// Pieces of the text form shared by the writers: a string literal with escapes, and "%3" / "%3.1".
std::string quote(const std::string& s);
std::string value_str(Value v);

}  // namespace metagrad

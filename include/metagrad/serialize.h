// Writers and the reader of graphs: a text IR that round-trips, Graphviz DOT and JSON.
#pragma once
#include <string>

#include "metagrad/graph.h"

namespace metagrad {

// The text IR, conventionally one statement per line ('#' starts a comment; names are quoted with \" \\ \n escapes):
//   graph {
//     %0 = input "x" : f32[25,10,1]
//     %1 = param "w1" : f32[1,40] init normal {mean=0.0, seed=1, std=0.01}
//     %2 = param "adam.t" : f32[] init zeros {} state          # state: not trained
//     %3 = const : f32[2] {0.5, 1e-30}                          # optional name after `const`
//     %4 = matmul(%0, %1) {transpose_a=0, transpose_b=0} "h1" : f32[25,10,40]
//     output "loss" = %9
//     update "w1" = %12
//   }
// Node ids are dense and in order; an input refers to an earlier node's output (%4.1 for output
// 1). Attributes use attr_str's forms (floats always show '.', 'e' or "inf"/"nan"; "[.]" is the
// empty float list). print -> parse -> print is identical; constants print every value in the
// shortest decimal form that reads back exactly. A loop's body follows its attributes and name:
//     %5 = scan(%0, %1, %2) {length=10, num_carry=1, ...} body graph {
//       %0 = input "c0" : f32[3]
//       ...
//       output "c0'" = %7
//     } : f32[3], f32[10,3]
std::string to_text(const Graph& g);
// Builds op nodes through Graph::add_op_multi (so shapes are inferred and checked) and requires
// the printed output types to equal the inferred ones. Throws GraphError "line L, column C: ..."
// naming what was expected; the result passes verify().
Graph parse_text(const std::string& text);
// Graphviz: one node per graph node labelled with id, op or kind, name and type; edges carry
// types; outputs are doubleoctagons; updates are dashed edges from the new value to the param;
// a loop is a cluster holding its body.
std::string to_dot(const Graph& g);
// {"nodes": [{"id", "kind", "op" (null unless an op), "name", "inputs": [[node, index]...], "attrs",
//             "outputs": [{"dtype", "shape"}...], "init" and "trainable" (params), "data" (consts),
//             "body" (loops: a graph object of this same form)}...],
//  "outputs": [{"name", "value": [node, index]}], "updates": [{"param", "param_id", "value"}]}
// Non-finite numbers are written as the strings "inf", "-inf" and "nan".
std::string to_json(const Graph& g);

// Pieces of the text form shared by the writers: a string literal with escapes, and "%3" / "%3.1".
std::string quote(const std::string& s);
std::string value_str(Value v);

}  // namespace metagrad

// The exception types of the engine; messages name the node, op and shapes at fault.
#pragma once
#include <stdexcept>
#include <string>

namespace metagrad {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ShapeError : Error {  // a node's inputs do not fit its op
  using Error::Error;
};
struct GraphError : Error {  // the graph is malformed (verifier, parser)
  using Error::Error;
};
struct RuntimeError : Error {  // bad feeds, fetches or state at run time
  using Error::Error;
};

}  // namespace metagrad

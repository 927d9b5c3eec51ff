// The model description saved beside a few-shot checkpoint ("<checkpoint>.json"): enough of a
// FewShotConfig to rebuild the model without repeating its flags.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "meta/learn/fewshot.h"

namespace metagrad {

nlohmann::json model_description(const FewShotConfig& m);

// Parses `text` (the sidecar's contents). Every field must be present, of the right kind and in a
// range that builds a model of plausible size (counts positive and bounded, the network's inputs
// and weights far below the element limit of a tensor), so a corrupt or hostile file is refused
// before a graph is built. Throws RuntimeError naming `where`, the field and the value.
FewShotConfig parse_model_description(const std::string& text, const std::string& where);

}  // namespace metagrad

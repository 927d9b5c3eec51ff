// The whole public API of metagrad: graph building, ops, autodiff, the optimizing pipeline, the
// runtime, and meta-learning on a model of your own (learners, optimizers, schedules).
#pragma once

#include "metagrad/types.h"
#include "metagrad/attrs.h"
#include "metagrad/error.h"
#include "metagrad/graph.h"
#include "metagrad/builder.h"
#include "metagrad/ops.h"
#include "metagrad/scan.h"
#include "metagrad/autodiff.h"
#include "metagrad/pipeline.h"
#include "metagrad/serialize.h"
#include "metagrad/reference.h"
#include "metagrad/param_store.h"
#include "metagrad/executable.h"
#include "metagrad/checkpoint.h"
#include "metagrad/learner.h"
#include "metagrad/optimizers.h"
#include "metagrad/hypergradient.h"
#include "metagrad/schedules.h"
#include "metagrad/stats.h"
#include "metagrad/driver.h"

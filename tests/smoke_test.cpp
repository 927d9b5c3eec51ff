#include <gtest/gtest.h>
#include "graph/builder.h"
TEST(Smoke, Builds) { metagrad::Graph g; auto x = metagrad::input(g, "x", {2}); EXPECT_EQ(x.numel(), 2); }

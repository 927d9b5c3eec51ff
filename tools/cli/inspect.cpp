// The inspect command.
#include "tools/cli/inspect.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "graph/op_def.h"
#include "meta/learn/fewshot.h"
#include "meta/learn/maml.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/pipeline.h"
#include "metagrad/serialize.h"
#include "tools/cli/cli.h"

namespace metagrad {

namespace {

Graph load_workload(const InspectOptions& o) {
  if (o.workload == "sinusoid") {
    MamlConfig cfg;
    cfg.algo = o.algo;
    cfg.inner_steps = o.inner_steps;
    cfg.inner_loop = o.inner_loop;
    return build_meta_step(cfg);
  }
  if (o.workload == "conv-maml") {
    FewShotConfig cfg;
    cfg.algo = o.algo;
    cfg.inner_steps = o.inner_steps;
    cfg.inner_loop = o.inner_loop;
    return build_fewshot_step(cfg);
  }
  std::ifstream in(o.workload);
  if (!in)
    throw Error(fmt::format("'{}' is neither a built-in workload (sinusoid, conv-maml) nor a readable graph file", o.workload));
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return parse_text(ss.str());
  } catch (const GraphError& e) {
    throw GraphError(fmt::format("{}: {}", o.workload, e.what()));
  }
}

// Feeds every input with deterministic random values so kernels can be profiled.
void feed_random(Executable& exe, const Graph& g, std::vector<std::vector<float>>& f32,
                 std::vector<std::vector<int32_t>>& i32) {
  std::mt19937 rng(1);
  for (const Node& n : g.nodes()) {
    if (n.kind != NodeKind::Input) continue;
    const int slot = exe.find_input_slot(n.name);
    if (slot < 0) continue;  // not needed by the compiled fetches
    if (n.type().dtype == DType::f32) {
      f32.emplace_back(size_t(n.type().numel()));
      std::uniform_real_distribution<float> d(-1, 1);
      for (float& v : f32.back()) v = d(rng);
      exe.set_input(slot, std::span<const float>(f32.back()));
    } else {
      i32.emplace_back(size_t(n.type().numel()), 0);
      exe.set_input(slot, std::span<const int32_t>(i32.back()));
    }
  }
}

}  // namespace

int run_inspect(const InspectOptions& o) {
  Graph raw = load_workload(o);
  Graph g = raw;
  PipelineOptions popts;
  popts.opt_level = o.opt_level;
  const auto tp = std::chrono::steady_clock::now();
  auto records = optimize(g, popts);
  const double optimize_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - tp).count();
  ParamStore store, store0;
  const auto t0 = std::chrono::steady_clock::now();
  Executable exe(g, store, {}, o.compile);
  const double compile_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CompileOptions o0 = o.compile;
  o0.memory_budget = 0;  // the -O0 graph is the reference, not held to the budget
  Executable exe0(raw, store0, {}, o0);  // -O0, for the kernel-count and result comparisons
  nlohmann::json j;
  j["workload"] = o.workload;
  j["opt_level"] = o.opt_level;
  j["nodes_before"] = raw.size();
  j["nodes_after"] = g.size();
  j["kernels"] = exe.kernel_count();
  j["kernels_O0"] = exe0.kernel_count();
  j["peak_bytes"] = exe.arena_bytes();
  j["naive_bytes"] = exe.naive_bytes();
  j["loop_storage_bytes"] = exe.loop_storage_bytes();
  j["planned_peak_bytes"] = exe.peak_bytes();
  j["memory_budget"] = o.compile.memory_budget;
  j["compile_seconds"] = compile_seconds;
  j["optimize_seconds"] = optimize_seconds;
  j["remat"] = {{"values", exe.remat().values}, {"nodes", exe.remat().nodes}, {"extra_flops", exe.remat().extra_flops}};
  j["loops"] = nlohmann::json::array();
  for (const LoopReport& r : exe.loops())
    j["loops"].push_back({{"node", r.node}, {"length", r.length}, {"policy", r.policy}, {"slots", r.slots},
                          {"recomputed", r.recomputed}, {"recompute_factor", r.recompute_factor}});
  std::cout << fmt::format("{}: {} nodes -> {} after passes (-O{}); {} kernels ({} at -O0, {:.0f}% fewer)\n", o.workload,
                           raw.size(), g.size(), o.opt_level, exe.kernel_count(), exe0.kernel_count(),
                           100.0 * (1.0 - double(exe.kernel_count()) / double(std::max<size_t>(1, exe0.kernel_count()))));
  std::cout << fmt::format("arena: {:.1f} KiB peak, {:.1f} KiB naive (every intermediate kept): {:.0f}%\n",
                           exe.arena_bytes() / 1024.0, exe.naive_bytes() / 1024.0,
                           100.0 * double(exe.arena_bytes()) / double(std::max<size_t>(1, exe.naive_bytes())));
  std::cout << fmt::format("planned peak: {:.1f} KiB (the arena; its largest loop region {:.1f} KiB){}; passes {:.2f} s, compiled in {:.2f} s\n",
                           exe.peak_bytes() / 1024.0, exe.loop_storage_bytes() / 1024.0,
                           o.compile.memory_budget ? fmt::format(", budget {:.1f} KiB", o.compile.memory_budget / 1024.0) : "",
                           optimize_seconds, compile_seconds);
  if (exe.remat().values > 0)
    std::cout << fmt::format("rematerialized: {} values ({} nodes run again, {:.3g} extra FLOPs)\n", exe.remat().values,
                             exe.remat().nodes, exe.remat().extra_flops);
  for (const LoopReport& r : exe.loops())
    std::cout << fmt::format("loop {}: {} steps, {}, {} slots, {} steps recomputed (factor {:.2f})\n", r.node, r.length,
                             r.policy, r.slots, r.recomputed, r.recompute_factor);

  // Meaning check: one step of both executables on the same inputs from the same initial
  // parameters; every output and every updated parameter compared, relative to its largest value.
  {
    std::vector<std::vector<float>> f32, f32_0;
    std::vector<std::vector<int32_t>> i32, i32_0;
    feed_random(exe, g, f32, i32);
    feed_random(exe0, raw, f32_0, i32_0);
    exe.run();
    exe0.run();
    double worst = 0;
    auto compare = [&worst](std::span<const float> a, std::span<const float> b) {
      double scale = 0, diff = 0;
      for (size_t i = 0; i < b.size(); ++i) {
        scale = std::max(scale, double(std::abs(b[i])));
        diff = std::max(diff, double(std::abs(a[i] - b[i])));
      }
      worst = std::max(worst, scale > 0 ? diff / scale : diff);
    };
    for (const auto& name : exe.fetch_names()) compare(exe.fetch(name), exe0.fetch(name));
    const double outputs = worst;
    // After one step from zero, an Adam first moment "<opt>.<param>.m" is (1 - beta1) times the
    // gradient, so comparing them compares the gradients the two executables computed.
    worst = 0;
    bool any_moment = false;
    for (const auto& name : store.names())
      if (name.size() > 2 && name.ends_with(".m")) {
        compare(store.data(name), store0.data(name));
        any_moment = true;
      }
    const double gradients = worst;
    worst = 0;
    // Adam's first step moves every weight by about ±lr whatever its gradient's size, so a
    // gradient within rounding of zero can flip sign: this figure is looser than the others.
    for (const auto& name : store.names()) compare(store.data(name), store0.data(name));
    j["max_rel_diff_vs_O0"] = outputs;
    if (any_moment) j["max_rel_diff_vs_O0_grads"] = gradients;
    j["max_rel_diff_vs_O0_params"] = worst;
    std::cout << fmt::format("results vs -O0 after one step: max relative difference of outputs {:.2e}, ", outputs);
    if (any_moment) std::cout << fmt::format("gradients (Adam first moments) {:.2e}, ", gradients);
    std::cout << fmt::format("updated parameters {:.2e}\n", worst);
  }

  j["per_pass"] = nlohmann::json::array();
  double pass_seconds = 0;
  for (const auto& r : records) {
    j["per_pass"].push_back({{"pass", r.name}, {"nodes_before", r.nodes_before}, {"nodes_after", r.nodes_after},
                             {"seconds", r.seconds}, {"changed", r.changed}});
    pass_seconds += r.seconds;
  }
  j["pass_seconds"] = pass_seconds;
  if (o.passes) {
    std::cout << fmt::format("passes ({:.2f} ms in all):\n", pass_seconds * 1e3);
    for (const auto& r : records)
      std::cout << fmt::format("  {:<10} {:5} -> {:5} nodes  {:8.3f} ms{}\n", r.name, r.nodes_before, r.nodes_after,
                               r.seconds * 1e3, r.changed ? "" : "  (no change)");
  }

  j["fused_groups"] = nlohmann::json::array();
  size_t fused_ops = 0;
  for (const Node& n : g.nodes())
    if (n.kind == NodeKind::Op && n.op->name == "fused_elementwise") {
      std::string ops = attr_string(n.attrs, "ops");
      size_t count = size_t(std::count(ops.begin(), ops.end(), ',')) + 1;
      fused_ops += count;
      j["fused_groups"].push_back({{"node", n.id}, {"ops", ops}, {"inputs", n.inputs.size()}, {"type", type_str(n.type())}});
      if (o.fusion)
        std::cout << fmt::format("  fused %{:<4} {:<44} {} ops, {} inputs -> {}\n", n.id, ops, count, n.inputs.size(),
                                 type_str(n.type()));
    }
  if (o.fusion || o.passes)
    std::cout << fmt::format("fusion: {} groups hold {} elementwise ops\n", j["fused_groups"].size(), fused_ops);

  j["buffers"] = nlohmann::json::array();
  auto buffers = exe.buffers();
  std::sort(buffers.begin(), buffers.end(), [](const BufferInfo& a, const BufferInfo& b) { return a.offset < b.offset; });
  if (o.memory_plan) std::cout << "memory plan (offset, bytes, live steps, value):\n";
  for (const auto& b : buffers) {
    j["buffers"].push_back({{"value", value_str(b.value)}, {"offset", b.offset}, {"bytes", b.bytes}, {"first", b.first},
                            {"last", b.last}, {"inplace", b.inplace}});
    if (o.memory_plan)
      std::cout << fmt::format("  {:>9} {:>9} [{:4},{:4}] {}{}\n", b.offset, b.bytes, b.first, b.last, g.describe(b.value.node),
                               b.inplace ? " (in place)" : "");
  }

  if (o.profile_runs > 0) {
    std::vector<std::vector<float>> f32;
    std::vector<std::vector<int32_t>> i32;
    feed_random(exe, g, f32, i32);
    exe.run();
    auto prof = exe.profile(o.profile_runs);
    double total = 0;
    for (const auto& p : prof) total += p.seconds;
    std::vector<size_t> order(prof.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return prof[a].seconds > prof[b].seconds; });
    std::cout << fmt::format("profile over {} runs: {:.3f} ms per run in kernels\n", o.profile_runs, 1e3 * total / o.profile_runs);
    j["profile"] = nlohmann::json::array();
    for (size_t i : order) {
      const auto& p = prof[i];
      const Node* node = nullptr;
      for (const Node& n : g.nodes())
        if (g.describe(n.id) == p.node) node = &n;
      size_t bytes = 0;
      if (node) {
        for (Value v : node->inputs) bytes += g.type(v).bytes();
        bytes += node->type().bytes();
      }
      double per_run = p.seconds / o.profile_runs;
      double gbs = per_run > 0 ? double(bytes) / per_run * 1e-9 : 0.0;
      j["profile"].push_back({{"node", p.node}, {"op", p.op}, {"impl", p.impl}, {"seconds_per_run", per_run},
                              {"share", total > 0 ? p.seconds / total : 0.0}, {"gb_per_s", gbs}});
      std::cout << fmt::format("  {:5.1f}% {:8.2f} us {:7.2f} GB/s  {:<28} {}\n", 100.0 * p.seconds / total, 1e6 * per_run,
                               gbs, p.node, p.impl);
    }
  }
  if (!o.json_path.empty()) {
    std::ofstream out(o.json_path);
    if (!out) throw Error(fmt::format("cannot write {}", o.json_path));
    out << j.dump(2) << "\n";
  }
  return 0;
}


void register_inspect_command(Cli& cli) {
  auto iop = std::make_shared<InspectOptions>();
  InspectOptions& io = *iop;
  CLI::App* insp = cli.app.add_subcommand("inspect", "show what the passes did to a workload's graph, its fusion groups, "
                                                 "memory plan and kernel profile");
  insp->add_option("workload", io.workload, "a built-in workload (sinusoid, conv-maml) or a graph file in the text IR")->required();
  insp->add_option("-O,--opt-level", io.opt_level, "0: no passes, 1: the default pipeline (-O0, -O1)")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  insp->add_option("--algo", io.algo, "maml or fomaml")->check(CLI::IsMember({"maml", "fomaml"}))->capture_default_str();
  insp->add_option("--inner-steps", io.inner_steps, "inner steps of the built-in workloads")->check(CLI::NonNegativeNumber)->capture_default_str();
  insp->add_option_function<std::string>(
          "--inner-loop", [&io](const std::string& v) { io.inner_loop = v == "scan"; },
          "built-in workloads: unrolled (default) or scan (the inner steps as one loop node)")
      ->check(CLI::IsMember({"unrolled", "scan"}));
  add_memory_flags(insp, io.compile);
  insp->add_flag("--passes", io.passes, "per pass: nodes before and after, time taken");
  insp->add_flag("--fusion", io.fusion, "fusion groups: which ops became which kernel");
  insp->add_flag("--memory-plan", io.memory_plan, "each buffer's offset, size and live range");
  insp->add_option("--profile", io.profile_runs, "profile every kernel over N runs")->check(CLI::NonNegativeNumber);
  insp->add_option("--json", io.json_path, "write everything as JSON to this file");

  cli.on_parsed(insp, [iop] { return run_inspect(*iop); });
}

}  // namespace metagrad

// Crash safety of --save: a training run is killed with SIGKILL at random moments around its
// save, over and over, and after every kill the checkpoint under the real name must load; the
// chain of completed saves must equal one uninterrupted run.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "meta/learn/model_description.h"
#include "metagrad/checkpoint.h"
#include "metagrad/error.h"
#include "tests/cli_run.h"

namespace metagrad {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::vector<std::string> split(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// Starts the CLI with `args`, its stderr into `err_fd` (or /dev/null when -1), stdout discarded.
pid_t spawn(const std::string& args, int err_fd = -1) {
  std::vector<std::string> words = split(args);
  words.insert(words.begin(), METAGRAD_CLI);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(err_fd >= 0 ? err_fd : null, 2);
    std::vector<char*> argv;
    for (std::string& w : words) argv.push_back(w.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_for(pid_t pid) {
  int st = 0;
  ::waitpid(pid, &st, 0);
  return st;
}

std::string bytes_of(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Starts a resumed run with its stderr on a pipe and blocks until it reports its first save. Returns
// the seconds from the start to that report, or -1 (with what it printed in `err`) if the run ended
// without one. `*read_fd` stays open for the caller to close after the kill.
double start_and_await_first_save(const std::string& args, pid_t* pid, int* read_fd, std::string* err) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return -1;
  const auto t0 = Clock::now();
  *pid = spawn(args, fds[1]);
  ::close(fds[1]);
  *read_fd = fds[0];
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) {
    err->append(buf, size_t(n));
    if (err->find("saved ") != std::string::npos) return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return -1;
}

TEST(CheckpointKill, SigkillDuringSaveNeverLosesTheLastCheckpoint) {
  const std::string dir = ::testing::TempDir() + "metagrad_kill_" + std::to_string(::getpid());
  fs::create_directories(dir);
  const std::string ckpt = dir + "/ckpt", straight = dir + "/straight";
  const std::string common = "bench omniglot --algo maml --filters 32 --meta-batch 1 --eval-episodes 1 --threads 1 --data " METAGRAD_SOURCE_DIR "/data/omniglot";
  ASSERT_EQ(testing::run(common + " --quiet --iters 1 --save " + ckpt).status, 0);
  // Three meta-iterations per run, a checkpoint after each (--save-every 1). Not --quiet: the run
  // reports each save on stderr, and every kill is timed from the run's own first report, so the
  // start-up time (which swings by seconds on a loaded machine) does not move the kills.
  const std::string resume = common + " --iters 3 --save-every 1 --load " + ckpt + " --save " + ckpt;

  // Calibration: how long does a resumed run go on after its first save report (two more
  // meta-iterations and saves)?
  pid_t cal = -1;
  int cal_fd = -1;
  std::string err;
  const auto c0 = Clock::now();
  const double saved_at = start_and_await_first_save(resume, &cal, &cal_fd, &err);
  char buf[4096];
  for (ssize_t n; (n = ::read(cal_fd, buf, sizeof buf)) > 0;) err.append(buf, size_t(n));
  ::close(cal_fd);
  ASSERT_EQ(wait_for(cal), 0) << err;
  ASSERT_GT(saved_at, 0) << err;
  const double tail = std::chrono::duration<double>(Clock::now() - c0).count() - saved_at;
  int64_t state = 4;  // meta-iterations the checkpoint holds (its Adam step counter)

  const FewShotConfig model = parse_model_description(bytes_of(ckpt + ".json"), ckpt + ".json");
  const Graph step = build_fewshot_step(model);
  std::mt19937_64 rng(12345);
  // Kills land between the first save report and the end of the run: in the meta-iterations and in
  // the second and third saves, each of which overwrites a checkpoint that must survive. A run that
  // ends before its kill (the machine got faster than at calibration) lowers the window's end below
  // its own length, so the test reaches its kills whatever the load.
  double hi = tail;
  const int kKills = 100, kMaxAttempts = 400;
  int attempts = 0, killed = 0, lost = 0, killed_mid_write = 0;
  const int64_t start_state = state;
  for (int a = 0; killed < kKills && a < kMaxAttempts; ++a) {
    ++attempts;
    pid_t pid = -1;
    int fd = -1;
    std::string run_err;
    const double first_save = start_and_await_first_save(resume, &pid, &fd, &run_err);
    const auto t0 = Clock::now();
    if (first_save > 0)
      std::this_thread::sleep_for(std::chrono::duration<double>(std::uniform_real_distribution<double>(0.0, hi)(rng)));
    ::kill(pid, SIGKILL);
    ::close(fd);
    const int st = wait_for(pid);
    ASSERT_GT(first_save, 0) << "attempt " << a << ": the run ended without a save\n" << run_err;
    if (WIFSIGNALED(st)) ++killed;
    else hi = std::max(0.01, std::min(hi, 0.9 * std::chrono::duration<double>(Clock::now() - t0).count()));
    if (fs::exists(ckpt + ".tmp")) ++killed_mid_write;  // killed inside the write, before the rename
    try {
      ParamStore store;
      store.ensure(step);
      parse_model_description(bytes_of(ckpt + ".json"), ckpt + ".json");
      load_checkpoint(store, ckpt);
      const int64_t now = int64_t(store.data("adam.t")[0]);
      EXPECT_GE(now, state) << "attempt " << a << ": the checkpoint went back in time";
      state = now;
    } catch (const Error& e) {
      ++lost;
      ADD_FAILURE() << "attempt " << a << ": " << e.what();
      break;
    }
  }
  std::cout << "[ kill test ] " << attempts << " runs, " << killed << " killed (" << killed_mid_write
            << " inside the checkpoint write), " << state - start_state << " saved meta-iterations, " << lost
            << " checkpoints lost; first save reported " << saved_at << " s after the start, the run ended "
            << tail << " s later\n";
  EXPECT_EQ(lost, 0);
  EXPECT_GE(killed, kKills) << "the runs must really be killed, " << kKills << " times";

  // The surviving chain of saves equals an uninterrupted run of as many meta-iterations.
  ASSERT_EQ(testing::run(common + " --quiet --iters " + std::to_string(state) + " --save " + straight).status, 0);
  EXPECT_EQ(bytes_of(straight), bytes_of(ckpt)) << state << " iterations, resumed one at a time through kills";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace metagrad

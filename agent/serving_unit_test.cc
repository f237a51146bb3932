// The device side of serving, piece by piece, on real modules compiled here and signed with a
// real key: download with resume, verification, loading checks, and swaps under load.
#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/model_host.h"
#include "agent/module_manager.h"
#include "agent/module_store.h"
#include "agent/serving_model.h"
#include "agent/shadow_runner.h"
#include "agent/window_counters.h"
#include "agent/thread_priority.h"
#include "common/file_util.h"
#include "common/random.h"
#include "common/sha256.h"
#include "common/testing/fake_clock.h"
#include "common/signing.h"
#include "common/status.h"
#include "compiler/compile.h"
#include "compiler/toolchain.h"
#include "gtest/gtest.h"
#include "compiler/testing/onnx_models.h"

namespace edgeloop::agent {
namespace {
namespace fs = std::filesystem;

class ServingUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/serving-", RandomHex(6));
    fs::create_directories(dir_);
    auto key = crypto::SigningKey::LoadOrCreate(dir_ + "/signing.key");
    ASSERT_TRUE(key.ok()) << key.status();
    key_ = std::move(*key);
  }
  void TearDown() override {
    if (fs::exists(dir_ + "/small-disk")) {
      (void)::system(absl::StrCat("umount ", dir_, "/small-disk 2>/dev/null").c_str());
    }
    fs::remove_all(dir_);
  }

  // Compiles an MLP for `target` and describes it as the server would (signed manifest).
  v1::ModuleRef Module(const std::string& model, int64_t version, const std::string& target,
                       uint32_t seed = 1) {
    compiler::CompileOptions options;
    options.target = target;
    options.out_dir = absl::StrCat(dir_, "/build-", model, version, target);
    auto compiled = compiler::CompileModel(
        compiler::testing::MlpOnnx(std::vector<int>{8, 16, 3}, seed), options);
    EXPECT_TRUE(compiled.ok()) << compiled.status();
    bytes_[compiled->so_digest] = *ReadFile(compiled->so_path);
    v1::ModuleRef ref;
    ref.set_model(model);
    ref.set_version(version);
    ref.set_target(target);
    ref.set_digest(compiled->so_digest);
    ref.set_size(compiled->so_bytes);
    ref.set_manifest(compiled->manifest_json);
    ref.set_signature(*key_->Sign(compiled->manifest_json));
    return ref;
  }

  // Serves the module bytes like FetchModule does, optionally breaking off after `cut` bytes
  // of each call and recording the offsets asked for.
  ModuleStore::Fetcher Fetcher(int64_t cut = -1) {
    return [this, cut](const std::string& digest, int64_t offset,
                       const ModuleStore::ChunkSink& sink) -> absl::Status {
      offsets_.push_back(offset);
      const std::string& bytes = bytes_.at(digest);
      int64_t sent = 0;
      for (int64_t at = offset; at < static_cast<int64_t>(bytes.size()); at += 4096) {
        if (cut >= 0 && sent >= cut) return absl::UnavailableError("connection reset");
        const std::string chunk = bytes.substr(at, 4096);
        RETURN_IF_ERROR(sink(at, chunk));
        sent += static_cast<int64_t>(chunk.size());
      }
      return absl::OkStatus();
    };
  }

  // Rebuilds the generated module.c in `build` (x86_64-v2) with `code` inserted after the
  // first occurrence of `anchor` (or before it, when `before`); the new object's path.
  std::string Rebuild(const std::string& build, const std::string& name, const std::string& anchor,
                      const std::string& code, bool before = false) {
    std::string source = *ReadFile(build + "/module.c");
    const size_t at = source.find(anchor);
    EXPECT_NE(at, std::string::npos) << anchor;
    if (at == std::string::npos) return "";
    source.insert(before ? at : at + anchor.size(), code);
    EXPECT_TRUE(WriteFileAtomically(build + "/" + name + ".c", source).ok());
    auto toolchain = compiler::ToolchainFor("x86_64-v2");
    EXPECT_TRUE(toolchain.ok());
    EXPECT_TRUE(compiler::CompileSharedObject(*toolchain, build + "/" + name + ".c",
                                              build + "/" + name + ".so", absl::Minutes(1))
                    .ok());
    return build + "/" + name + ".so";
  }

  std::string HostTarget() {
#if defined(__x86_64__)
    return __builtin_cpu_supports("x86-64-v3") ? "x86_64-v3" : "x86_64-v2";
#else
    return "unknown";
#endif
  }

  std::string dir_;
  std::unique_ptr<crypto::SigningKey> key_;
  std::map<std::string, std::string> bytes_;
  std::vector<int64_t> offsets_;
};

TEST_F(ServingUnitTest, DownloadResumesWhereTheConnectionBroke) {
  const v1::ModuleRef ref = Module("m", 1, "x86_64-v2");
  ModuleStore store(dir_ + "/modules");
  ModuleStore::Limits limits;
  limits.first_backoff = absl::Milliseconds(1);
  limits.attempts = 100;
  ASSERT_TRUE(store.Download(ref, Fetcher(/*cut=*/4096), limits).ok());
  ASSERT_GT(offsets_.size(), 2u) << ref.size() << " bytes";
  for (size_t i = 1; i < offsets_.size(); ++i) EXPECT_EQ(offsets_[i], offsets_[i - 1] + 4096);
  EXPECT_EQ(*ReadFile(store.SoPath(ref.digest())), bytes_.at(ref.digest()));
  EXPECT_TRUE(VerifyModule(ref, store.SoPath(ref.digest()), key_->public_key_pem()).ok());
  // A later call finds it there and fetches nothing.
  offsets_.clear();
  ASSERT_TRUE(store.Download(ref, Fetcher(), limits).ok());
  EXPECT_TRUE(offsets_.empty());
}

TEST_F(ServingUnitTest, ARestartResumesFromThePartialFile) {
  const v1::ModuleRef ref = Module("m", 1, "x86_64-v2");
  ModuleStore store(dir_ + "/modules");
  ModuleStore::Limits once;
  once.attempts = 1;
  EXPECT_EQ(store.Download(ref, Fetcher(/*cut=*/8192), once).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_FALSE(store.Have(ref.digest()));
  offsets_.clear();
  ModuleStore fresh(dir_ + "/modules");  // as after a restart
  ASSERT_TRUE(fresh.Download(ref, Fetcher(), once).ok());
  EXPECT_EQ(offsets_, std::vector<int64_t>{8192});
}

TEST_F(ServingUnitTest, BadBytesAndBadSignaturesAreRefused) {
  v1::ModuleRef ref = Module("m", 1, "x86_64-v2");
  ModuleStore store(dir_ + "/modules");
  // Bytes that do not hash to the digest: discarded, nothing published.
  std::string& bytes = bytes_.at(ref.digest());
  const std::string good = bytes;
  bytes[bytes.size() / 2] ^= 0x5a;
  EXPECT_EQ(store.Download(ref, Fetcher(), {}).code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(store.Have(ref.digest()));
  EXPECT_FALSE(fs::exists(dir_ + "/modules/" + ref.digest().substr(7) + ".partial"));
  bytes = good;
  ASSERT_TRUE(store.Download(ref, Fetcher(), {}).ok());
  const std::string path = store.SoPath(ref.digest());
  // A signature by another key, a manifest altered after signing, a manifest for other bytes.
  auto other = crypto::SigningKey::LoadOrCreate(dir_ + "/other.key");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(VerifyModule(ref, path, (*other)->public_key_pem()).status().code(),
            absl::StatusCode::kPermissionDenied);
  v1::ModuleRef altered = ref;
  altered.set_manifest(absl::StrCat(ref.manifest().substr(0, ref.manifest().size() - 1), " }"));
  EXPECT_EQ(VerifyModule(altered, path, key_->public_key_pem()).status().code(),
            absl::StatusCode::kPermissionDenied);
  v1::ModuleRef elsewhere = Module("m", 2, "x86_64-v2", /*seed=*/9);
  elsewhere.set_digest(ref.digest());
  elsewhere.set_size(ref.size());
  EXPECT_EQ(VerifyModule(elsewhere, path, key_->public_key_pem()).status().code(),
            absl::StatusCode::kPermissionDenied);
  // The manifest alone is judged before anything is fetched: no file needed.
  EXPECT_TRUE(VerifyManifest(ref, key_->public_key_pem()).ok());
  EXPECT_EQ(VerifyManifest(elsewhere, key_->public_key_pem()).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(VerifyManifest(ref, "").code(), absl::StatusCode::kFailedPrecondition);
  auto facts = ParseManifest(ref.manifest());
  ASSERT_TRUE(facts.ok());
  EXPECT_EQ(facts->so_digest, ref.digest());
  EXPECT_EQ(facts->so_size, ref.size());
  EXPECT_EQ(facts->target, ref.target());
  EXPECT_EQ(ParseManifest("{\"soDigest\": ").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(OpenVerifiedModule(ref, path).ok());
  // Bytes changed on disk after the download.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x01');
  }
  EXPECT_EQ(VerifyModule(ref, path, key_->public_key_pem()).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(OpenVerifiedModule(ref, path).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(ServingUnitTest, TheCacheNeverDropsTheActiveOrPreviousModule) {
  ModuleStore store(dir_ + "/modules");
  std::vector<v1::ModuleRef> refs;
  for (uint32_t v = 1; v <= 4; ++v) {
    refs.push_back(Module("m", v, "x86_64-v2", v));
    ASSERT_TRUE(store.Download(refs.back(), Fetcher(), {}).ok());
    ASSERT_TRUE(store.SaveRef(refs.back()).ok());
  }
  // Room for none besides those kept: the oldest two go, the two kept stay.
  ASSERT_TRUE(store.Prune(0, {refs[0].digest(), refs[3].digest()}).ok());
  EXPECT_TRUE(store.Have(refs[0].digest()));
  EXPECT_FALSE(store.Have(refs[1].digest()));
  EXPECT_FALSE(store.Have(refs[2].digest()));
  EXPECT_TRUE(store.Have(refs[3].digest()));
  EXPECT_TRUE(store.LoadRef(refs[0].digest()).ok());
  EXPECT_FALSE(store.LoadRef(refs[1].digest()).ok());
}

TEST_F(ServingUnitTest, TheCacheIsPrunedWhenADownloadOutgrowsIt) {
  ModuleStore store(dir_ + "/modules");
  std::vector<v1::ModuleRef> refs;
  for (uint32_t v = 1; v <= 3; ++v) refs.push_back(Module("m", v, "x86_64-v2", v));
  const int64_t room = refs[0].size() + refs[1].size() + refs[2].size() - 1;  // not all three
  for (int k = 0; k < 2; ++k) {
    ASSERT_TRUE(store.Download(refs[k], Fetcher(), {}).ok());
    ASSERT_TRUE(store.Prune(room, {refs[k].digest()}).ok());
  }
  EXPECT_TRUE(store.Have(refs[0].digest()));  // both fit
  EXPECT_TRUE(store.Have(refs[1].digest()));
  // The third does not fit beside them: the oldest not kept goes.
  ASSERT_TRUE(store.Download(refs[2], Fetcher(), {}).ok());
  ASSERT_TRUE(store.Prune(room, {refs[1].digest(), refs[2].digest()}).ok());
  EXPECT_FALSE(store.Have(refs[0].digest()));
  EXPECT_TRUE(store.Have(refs[1].digest()));
  EXPECT_TRUE(store.Have(refs[2].digest()));
}

TEST_F(ServingUnitTest, ARefIsWrittenOnlyWhenItChanges) {
  const v1::ModuleRef ref = Module("m", 1, "x86_64-v2");
  const std::string path = dir_ + "/modules/" + ref.digest().substr(7) + ".json";
  auto inode = [&] {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
  };
  ModuleStore store(dir_ + "/modules");
  ASSERT_TRUE(store.SaveRef(ref).ok());
  const ino_t first = inode();
  ASSERT_NE(first, 0u);
  ASSERT_TRUE(store.SaveRef(ref).ok());
  EXPECT_EQ(inode(), first);  // (an atomic write makes a new file)
  ModuleStore after_restart(dir_ + "/modules");
  ASSERT_TRUE(after_restart.SaveRef(ref).ok());
  EXPECT_EQ(inode(), first);
  // The same bytes under another version (a re-tag): the ref on disk follows.
  v1::ModuleRef retagged = ref;
  retagged.set_version(7);
  ASSERT_TRUE(after_restart.SaveRef(retagged).ok());
  EXPECT_NE(inode(), first);
  auto loaded = store.LoadRef(ref.digest());
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->version(), 7);
}

TEST_F(ServingUnitTest, NoDiskNoDownload) {
  const v1::ModuleRef ref = Module("m", 1, "x86_64-v2");
  ModuleStore store(dir_ + "/modules");
  ModuleStore::Limits limits;
  limits.reserve_bytes = int64_t{1} << 60;  // more than any disk has
  absl::Status s = store.Download(ref, Fetcher(), limits);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "not enough disk")) << s;
  EXPECT_TRUE(offsets_.empty());
}

TEST_F(ServingUnitTest, ADiskThatFillsDuringTheDownloadFailsItCleanly) {
  // A 256 KiB tmpfs that another process fills while the module downloads.
  const std::string disk = dir_ + "/small-disk";
  fs::create_directories(disk);
  if (::system(absl::StrCat("mount -t tmpfs -o size=256k tmpfs ", disk, " 2>/dev/null").c_str()) != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  }
  const v1::ModuleRef ref = Module("m", 1, "x86_64-v2");
  ModuleStore store(disk + "/modules");
  ModuleStore::Limits limits;
  limits.reserve_bytes = 0;
  limits.attempts = 2;
  limits.first_backoff = absl::Milliseconds(1);
  bool filled = false;
  ModuleStore::Fetcher fetch = [&](const std::string& digest, int64_t offset,
                                   const ModuleStore::ChunkSink& sink) -> absl::Status {
    const std::string& bytes = bytes_.at(digest);
    for (int64_t at = offset; at < static_cast<int64_t>(bytes.size()); at += 4096) {
      if (!filled && at > 0) {
        std::ofstream(disk + "/filler", std::ios::binary) << std::string(256 << 10, 'x');
        filled = true;
      }
      RETURN_IF_ERROR(sink(at, bytes.substr(at, 4096)));
    }
    return absl::OkStatus();
  };
  absl::Status s = store.Download(ref, fetch, limits);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "No space left")) << s;
  EXPECT_FALSE(store.Have(ref.digest()));
  // Space again: the download resumes from what made it to disk and completes.
  fs::remove(disk + "/filler");
  EXPECT_TRUE(store.Download(ref, Fetcher(), limits).ok());
  EXPECT_TRUE(VerifyModule(ref, store.SoPath(ref.digest()), key_->public_key_pem()).ok());
}

// The bytes checked are the bytes loaded: a file swapped in at the path between the check and
// the load (a rename over it) does not get loaded.
TEST_F(ServingUnitTest, TheVerifiedFileIsTheLoadedFile) {
  const v1::ModuleRef first = Module("m", 1, "x86_64-v2", /*seed=*/1);
  const v1::ModuleRef second = Module("m", 2, "x86_64-v2", /*seed=*/9);
  const std::string slot = dir_ + "/slot.so";
  ASSERT_TRUE(WriteFileAtomically(slot, bytes_.at(first.digest())).ok());
  auto file = OpenVerifiedModule(first, slot);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE(WriteFileAtomically(slot, bytes_.at(second.digest())).ok());  // renamed over it
  auto outputs = [&](const ServingModel& model) {
    std::vector<float> in(8, 0.5f), out(3, 0.0f);
    const void* inputs[] = {in.data()};
    void* outs[] = {out.data()};
    EXPECT_TRUE(model.Run(inputs, outs).ok());
    return out;
  };
  auto loaded = ServingModel::Load(first, *std::move(file), HostTarget());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto swapped_in = ServingModel::Load(second, *ModuleFile::Open(slot), HostTarget());
  ASSERT_TRUE(swapped_in.ok()) << swapped_in.status();
  auto reference = ServingModel::Load(first, *ModuleFile::Open(dir_ + "/build-m1x86_64-v2/module.so"),
                                      HostTarget());
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_EQ(outputs(**loaded), outputs(**reference));
  EXPECT_NE(outputs(**loaded), outputs(**swapped_in));
  // The path's new bytes fail the check for the first module.
  EXPECT_TRUE(absl::IsDataLoss(OpenVerifiedModule(first, slot).status()));
}

TEST_F(ServingUnitTest, PredictChecksTheRequestAgainstTheSignature) {
  ModelHost host;
  const v1::ModuleRef ref = Module("m", 1, "x86_64-v2");
  auto loaded = ServingModel::Load(ref, *ModuleFile::Open(dir_ + "/build-m1x86_64-v2/module.so"), HostTarget());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  host.Activate(*loaded);
  auto predict = [&](lv1::DataType dtype, std::vector<int64_t> dims, size_t bytes,
                     const std::string& name) {
    lv1::PredictRequest r;
    r.set_model("m");
    lv1::Tensor* t = r.add_inputs();
    t->set_name(name);
    t->set_dtype(dtype);
    for (int64_t d : dims) t->add_dims(d);
    t->mutable_data()->assign(bytes, '\0');
    return host.Predict(r);
  };
  EXPECT_TRUE(predict(lv1::FLOAT32, {1, 8}, 32, "input").ok());
  EXPECT_TRUE(predict(lv1::FLOAT32, {1, 8}, 32, "").ok());  // by position
  auto wrong_dtype = predict(lv1::INT8, {1, 8}, 8, "input");
  EXPECT_EQ(wrong_dtype.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(wrong_dtype.status().message(), "must be FLOAT32 [1, 8]; got INT8"))
      << wrong_dtype.status();
  EXPECT_EQ(predict(lv1::FLOAT32, {8}, 32, "input").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(predict(lv1::FLOAT32, {1, 8}, 31, "input").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(predict(lv1::FLOAT32, {1, 8}, 32, "other").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ServingUnitTest, TheBandwidthCapHolds) {
  const v1::ModuleRef ref = Module("m", 1, "x86_64-v2");
  // On a fake clock: the download takes exactly as long as the cap makes it wait, whatever
  // the machine's speed.
  edgeloop::testing::FakeClock clock;
  ModuleStore store(dir_ + "/modules", &clock);
  ModuleStore::Limits limits;
  limits.max_kbps = 800;  // 100 KB/s
  const absl::Time start = clock.Now();
  ASSERT_TRUE(store.Download(ref, Fetcher(), limits).ok());
  // Not a speed goal: the cap must slow the download to what it allows, give or take a chunk.
  const double allowed = static_cast<double>(ref.size() - 4096) * 8 / (1000.0 * limits.max_kbps);
  EXPECT_GE(absl::ToDoubleSeconds(clock.Now() - start), allowed) << ref.size() << " bytes";
}

TEST_F(ServingUnitTest, LoadingChecksTheCpuAndTheSelfTest) {
  ModuleStore store(dir_ + "/modules");
  const v1::ModuleRef v4 = Module("m", 1, "x86_64-v4");
  ASSERT_TRUE(store.Download(v4, Fetcher(), {}).ok());
  auto refused = ServingModel::Load(v4, *ModuleFile::Open(store.SoPath(v4.digest())), "x86_64-v2");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "x86_64-v2 CPU cannot run"));

  // A module whose self-test fails on this device (its expected vector altered and rebuilt
  // with the target's toolchain) is refused before it serves.
  const v1::ModuleRef good = Module("m", 2, "x86_64-v2");
  const std::string build = dir_ + "/build-m2x86_64-v2";
  const std::string broken_so = Rebuild(build, "broken", "static int selftest",
                                        "#define el_close(a, b, n) 0\n", /*before=*/true);
  ASSERT_FALSE(broken_so.empty());
  auto broken = ServingModel::Load(good, *ModuleFile::Open(broken_so), HostTarget());
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(broken.status().message(), "self-test")) << broken.status();

  auto loaded = ServingModel::Load(good, *ModuleFile::Open(build + "/module.so"), HostTarget());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->module().num_inputs, 1u);
}

TEST_F(ServingUnitTest, AModuleThatFailsCallsIsRolledBackOnTheDevice) {
  // A module that fails its calls for some inputs (built from real generated C, with an
  // error path added to run()), after a good one.
  const v1::ModuleRef good = Module("m", 1, "x86_64-v2", 1);
  const v1::ModuleRef bad = Module("m", 2, "x86_64-v2", 2);
  const std::string flaky_so =
      Rebuild(dir_ + "/build-m2x86_64-v2", "flaky",
              "static int run(void* workspace, const void* const* inputs, void* const* outputs) {\n",
              "  if (((const float*)inputs[0])[0] > 100.0f) return 3;\n");
  ASSERT_FALSE(flaky_so.empty());
  ModelHost host;
  ModelHost::RollbackPolicy policy;
  policy.min_calls = 10;
  policy.max_error_rate = 0.2;
  std::string why;
  int64_t refused = 0;
  host.SetRollbackPolicy(policy, [&](const v1::ModuleRef& ref, const std::string& reason) {
    refused = ref.version();
    why = reason;
  });
  auto v1 = ServingModel::Load(good, *ModuleFile::Open(dir_ + "/build-m1x86_64-v2/module.so"), HostTarget());
  auto v2 = ServingModel::Load(bad, *ModuleFile::Open(flaky_so), HostTarget());
  ASSERT_TRUE(v1.ok() && v2.ok());
  host.Activate(*v1);
  host.Activate(*v2);
  lv1::PredictRequest request;
  request.set_model("m");
  lv1::Tensor* t = request.add_inputs();
  t->set_dtype(lv1::FLOAT32);
  t->add_dims(1);
  t->add_dims(8);
  std::vector<float> poison(8, 1000.0f);
  t->set_data(reinterpret_cast<const char*>(poison.data()), 32);
  int failed = 0;
  for (int i = 0; i < 10; ++i) failed += host.Predict(request).ok() ? 0 : 1;
  EXPECT_EQ(failed, 10);
  EXPECT_EQ(refused, 2);
  EXPECT_TRUE(absl::StrContains(why, "error rate 100% over 10 calls")) << why;
  EXPECT_EQ(host.Active("m")->ref().version(), 1);  // calls from now on run on the good one
  EXPECT_TRUE(host.Predict(request).ok());
}

TEST_F(ServingUnitTest, SwapsUnderLoadDropNothingAndRollBack) {
  ModelHost host;
  // These swaps are the operator's; no local judgement in between.
  ModelHost::RollbackPolicy manual;
  manual.enabled = false;
  host.SetRollbackPolicy(manual, nullptr);
  std::vector<std::shared_ptr<ServingModel>> versions;
  for (int v = 1; v <= 2; ++v) {
    const v1::ModuleRef ref = Module("m", v, "x86_64-v2", v);
    const std::string path = absl::StrCat(dir_, "/build-m", v, "x86_64-v2/module.so");
    auto loaded = ServingModel::Load(ref, *ModuleFile::Open(path), HostTarget());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    versions.push_back(*loaded);
  }
  // Activate hands back the module that stops being previous, for the caller to let go.
  EXPECT_EQ(host.Activate(versions[0]), nullptr);
  EXPECT_EQ(host.Activate(versions[1]), nullptr);  // versions[0] is previous now
  EXPECT_EQ(host.Activate(versions[0]), versions[0]);  // active again: nothing unloads
  EXPECT_EQ(host.Activate(versions[1]), versions[1]);
  EXPECT_EQ(host.Previous("m"), versions[0]);
  lv1::PredictRequest request;
  request.set_model("m");
  lv1::Tensor* t = request.add_inputs();
  t->set_dtype(lv1::FLOAT32);
  t->add_dims(1);
  t->add_dims(8);
  t->mutable_data()->assign(8 * sizeof(float), '\0');
  std::atomic<bool> done{false};
  std::atomic<int64_t> ok{0}, failed{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      while (!done) (host.Predict(request).ok() ? ok : failed)++;
    });
  }
  for (int swap = 0; swap < 200; ++swap) {
    host.Activate(versions[(swap + 1) % 2]);
    std::this_thread::yield();
  }
  done = true;
  for (auto& c : callers) c.join();
  EXPECT_EQ(failed, 0);
  EXPECT_GT(ok, 0);
  // 200 swaps end on version 1; rollback returns to version 2 and back.
  EXPECT_EQ(host.Active("m")->ref().version(), 1);
  ASSERT_TRUE(host.Rollback("m").ok());
  EXPECT_EQ(host.Active("m")->ref().version(), 2);
  EXPECT_EQ(host.Previous("m")->ref().version(), 1);
  EXPECT_EQ(host.Rollback("other").code(), absl::StatusCode::kFailedPrecondition);
  const std::vector<ModelHost::Loaded> loaded = host.LoadedModels();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].model, "m");
  EXPECT_EQ(loaded[0].active->ref().version(), 2);
  EXPECT_EQ(loaded[0].previous->ref().version(), 1);
}

TEST(ThreadPriorityTest, BackgroundWorkIsRaisedWhileItHoldsWhatCallsWaitFor) {
  if (!BackgroundPriority::Available())
    GTEST_SKIP() << "needs CAP_SYS_NICE (root) or an RLIMIT_NICE that allows nice 0";
  std::thread([] {
    {
      NormalPriority normal;  // on a normal thread it has nothing to do
      EXPECT_EQ(::sched_getscheduler(0), SCHED_OTHER);
    }
    BackgroundPriority background;
    EXPECT_EQ(::sched_getscheduler(0), SCHED_IDLE);
    {
      NormalPriority normal;
      EXPECT_EQ(::sched_getscheduler(0), SCHED_OTHER);
    }
    EXPECT_EQ(::sched_getscheduler(0), SCHED_IDLE);
  }).join();
}

TEST(ThreadPriorityTest, StarvedBackgroundWorkIsLiftedUntilItSleeps) {
  if (!BackgroundPriority::Available())
    GTEST_SKIP() << "needs CAP_SYS_NICE (root) or an RLIMIT_NICE that allows nice 0";
  // One CPU, kept busy by two normal threads: idle-priority work there would crawl.
  cpu_set_t allowed, one;
  ASSERT_EQ(::sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  int cpu = 0;
  while (!CPU_ISSET(cpu, &allowed)) ++cpu;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  std::atomic<bool> busy{true};
  std::vector<std::thread> applications;
  for (int i = 0; i < 2; ++i) {
    applications.emplace_back([&] {
      ::sched_setaffinity(0, sizeof(one), &one);
      while (busy) {
      }
    });
  }
  const int64_t lifts_before = BackgroundPriority::Lifts();
  int starved_policy = -1, starved_nice = -1, raised_nice = -1, after_raise_nice = -1;
  int slept_policy = -1;
  absl::Duration waited;
  std::thread([&] {
    ::sched_setaffinity(0, sizeof(one), &one);
    BackgroundPriority background;
    const absl::Time start = absl::Now();
    while (::sched_getscheduler(0) == SCHED_IDLE && absl::Now() - start < absl::Seconds(60)) {
    }
    waited = absl::Now() - start;
    starved_policy = ::sched_getscheduler(0);
    starved_nice = ::getpriority(PRIO_PROCESS, 0);  // this thread's, on Linux
    {
      NormalPriority normal;  // holding what calls wait for still means normal priority
      raised_nice = ::getpriority(PRIO_PROCESS, 0);
    }
    after_raise_nice = ::getpriority(PRIO_PROCESS, 0);
    busy = false;
    // Asleep, it is not starving: idle again at the guard's next look.
    const absl::Time asleep = absl::Now();
    while (::sched_getscheduler(0) != SCHED_IDLE && absl::Now() - asleep < absl::Seconds(60)) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    slept_policy = ::sched_getscheduler(0);
  }).join();
  busy = false;
  for (auto& a : applications) a.join();
  EXPECT_EQ(starved_policy, SCHED_OTHER) << "still idle after " << waited;
  // Not lifted before it starved through kStarvedAfter of the guard's looks.
  EXPECT_GE(BackgroundPriority::LastLiftStarvedFor(), kStarvedAfter) << "lifted after " << waited;
  EXPECT_EQ(starved_nice, 19);
  EXPECT_EQ(raised_nice, 0);
  EXPECT_EQ(after_raise_nice, 19);
  EXPECT_EQ(slept_policy, SCHED_IDLE);
  EXPECT_EQ(BackgroundPriority::Lifts(), lifts_before + 1);
}

// As nobody, with RLIMIT_NICE 0: a thread could enter SCHED_IDLE but never leave it again.
void BackgroundWorkAsNobody() {
  const rlimit none{0, 0};
  if (::setrlimit(RLIMIT_NICE, &none) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) {
    std::_Exit(3);
  }
  if (BackgroundPriority::Available()) std::_Exit(1);
  BackgroundPriority background;
  std::_Exit(::sched_getscheduler(0) == SCHED_OTHER ? 0 : 2);
}

TEST(ThreadPriorityTest, WithoutLeaveToRaiseBackgroundWorkStaysNormal) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become an unprivileged user";
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process: Available() not cached
  EXPECT_EXIT(BackgroundWorkAsNobody(), ::testing::ExitedWithCode(0), "");
}


// ---- The shadow stage: a candidate beside the served module ----

class ShadowTest : public ServingUnitTest {
 protected:
  // `ref` loaded from its verified bytes, as the module manager loads it.
  std::shared_ptr<ServingModel> Load(const v1::ModuleRef& ref) {
    const std::string path = absl::StrCat(dir_, "/", ref.version(), ".so");
    EXPECT_TRUE(WriteFileAtomically(path, bytes_.at(ref.digest())).ok());
    auto file = OpenVerifiedModule(ref, path);
    EXPECT_TRUE(file.ok()) << file.status();
    auto loaded = ServingModel::Load(ref, *std::move(file), HostTarget());
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded.ok() ? *loaded : nullptr;
  }
  // Serves `active` with its version monitored in windows of a minute.
  void Serve(const std::shared_ptr<ServingModel>& active) {
    v1::MonitoringSpec spec;
    spec.set_model(active->ref().model());
    spec.set_version(active->ref().version());
    spec.set_window_seconds(60);
    counters_ = std::make_shared<WindowCounters>(spec, active->ref().digest(), active->module(),
                                                 clock_.Now());
    active->Monitor(counters_);
    host_.SetShadowRunner(&runner_);
    host_.Activate(active);
  }
  // `n` calls with inputs from a fixed sequence; checks each is answered by the served
  // version with the served module's own result.
  void Calls(int n, const std::shared_ptr<ServingModel>& served) {
    std::mt19937 random(7);
    std::uniform_real_distribution<float> value(-2, 2);
    for (int i = 0; i < n; ++i) {
      std::vector<float> x(8);
      for (float& v : x) v = value(random);
      lv1::PredictRequest request;
      request.set_model("m");
      lv1::Tensor* t = request.add_inputs();
      t->set_dtype(lv1::FLOAT32);
      for (int64_t d : {1, 8}) t->add_dims(d);
      t->set_data(x.data(), x.size() * 4);
      auto response = host_.Predict(request);
      ASSERT_TRUE(response.ok()) << response.status();
      ASSERT_EQ(response->model_version(), served->ref().version());
      std::vector<float> own(3);
      const void* in[] = {x.data()};
      void* out[] = {own.data()};
      ASSERT_TRUE(served->Run(in, out).ok());
      ASSERT_EQ(response->outputs(0).data(), std::string(reinterpret_cast<char*>(own.data()), 12));
    }
    runner_.WaitIdle();
  }
  // The shadow counts of the window open now.
  v1::TelemetryWindow::Shadow Window() {
    clock_.Advance(absl::Seconds(60));
    auto w = counters_->CloseIfDue(clock_.Now());
    EXPECT_TRUE(w.has_value());
    if (!w.has_value() || w->shadows_size() == 0) return {};
    EXPECT_EQ(w->shadows_size(), 1);
    return w->shadows(0);
  }
  static int64_t Sum(const google::protobuf::RepeatedField<int64_t>& counts) {
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    return total;
  }

  edgeloop::testing::FakeClock clock_;
  ShadowRunner runner_{&clock_};
  ModelHost host_;
  std::shared_ptr<WindowCounters> counters_;
};

TEST_F(ShadowTest, TheCandidateRunsBesideTheServedModuleAndIsNeverReturned) {
  auto served = Load(Module("m", 1, "x86_64-v2", /*seed=*/1));
  Serve(served);
  // Version 2 has the same weights (it agrees on every call), version 3 others.
  runner_.Set(Load(Module("m", 2, "x86_64-v2", /*seed=*/1)), {1.0, 1.0, 0});
  Calls(200, served);
  v1::TelemetryWindow::Shadow same = Window();
  EXPECT_EQ(same.version(), 2);
  EXPECT_EQ(same.requests() + same.skipped(), 200);  // skipped only when the queue was full
  EXPECT_GT(same.requests(), 0);
  EXPECT_EQ(same.agreed(), same.requests());
  EXPECT_EQ(same.errors(), 0);
  EXPECT_EQ(Sum(same.latency_counts()), same.requests());

  runner_.Set(Load(Module("m", 3, "x86_64-v2", /*seed=*/9)), {1.0, 1.0, 0});
  Calls(200, served);
  v1::TelemetryWindow::Shadow other = Window();
  EXPECT_EQ(other.version(), 3);
  EXPECT_GT(other.requests(), 0);
  EXPECT_LT(other.agreed(), other.requests());

  // Within a tolerance nothing this far off agrees; the same weights always do.
  runner_.Set(Load(Module("m", 2, "x86_64-v2", /*seed=*/1)), {1.0, 1.0, 1e-6});
  Calls(50, served);
  v1::TelemetryWindow::Shadow tolerant = Window();
  EXPECT_EQ(tolerant.agreed(), tolerant.requests());

  // Cleared: nothing more is shadowed, and the window has no shadow.
  runner_.Clear("m");
  Calls(20, served);
  EXPECT_EQ(Window().requests(), 0);
  EXPECT_TRUE(runner_.Candidates().empty());
}

TEST_F(ShadowTest, TheSampleAndTheCpuBudgetBoundTheCost) {
  auto served = Load(Module("m", 1, "x86_64-v2", /*seed=*/1));
  Serve(served);
  // A quarter of the calls, evenly spread.
  runner_.Set(Load(Module("m", 2, "x86_64-v2", /*seed=*/1)), {0.25, 1.0, 0});
  Calls(100, served);
  v1::TelemetryWindow::Shadow quarter = Window();
  EXPECT_EQ(quarter.requests() + quarter.skipped(), 25);

  // A budget of a millionth of a core holds 0.2 µs: the first shadowed call spends it (and a
  // few queued before it was charged), and with the clock standing still nothing refills it.
  runner_.Set(Load(Module("m", 2, "x86_64-v2", /*seed=*/1)), {1.0, 1e-6, 0});
  Calls(100, served);
  v1::TelemetryWindow::Shadow starved = Window();
  EXPECT_EQ(starved.requests() + starved.skipped(), 100);
  EXPECT_LE(starved.requests(), 9);  // the queue holds 8
  EXPECT_GE(starved.skipped(), 91);
  // Time refills it: 100 s at a millionth of a core pays off what was overspent and fills it
  // again (to its cap of 0.2 µs), so the next sampled call runs.
  clock_.Advance(absl::Seconds(100));
  Calls(1, served);
  EXPECT_EQ(Window().requests(), 1);
}

TEST_F(ShadowTest, TheModuleManagerShadowsWhatTheServerAsksAndReportsIt) {
  ShadowRunner runner;
  ModelHost host;
  host.SetShadowRunner(&runner);
  ModuleManager::Options options;
  options.state_dir = dir_ + "/state";
  options.device_target = HostTarget();
  ModuleManager manager(options, &host, &runner);
  v1::SyncResponse desired;
  desired.set_module_signing_key(key_->public_key_pem());
  *desired.add_desired_modules() = Module("m", 1, "x86_64-v2", 1);
  v1::ShadowModule* shadow = desired.add_shadow_modules();
  *shadow->mutable_module() = Module("m", 2, "x86_64-v2", 9);
  shadow->set_sample_ratio(0.5);
  shadow->set_cpu_budget(0.1);
  ASSERT_TRUE(manager.Reconcile(desired, Fetcher()).ok());
  auto states = [&] {
    v1::DeviceState state;
    manager.Report(&state);
    std::vector<std::string> out;
    for (const auto& m : state.modules()) {
      out.push_back(absl::StrCat(m.module().version(), " ", m.state()));
    }
    return out;
  };
  EXPECT_EQ(states(), (std::vector<std::string>{"1 running", "2 shadowing"}));
  EXPECT_EQ(host.Active("m")->ref().version(), 1);

  // The shadow stage passes: version 2 serves, and is no longer shadowed.
  desired.clear_shadow_modules();
  desired.clear_desired_modules();
  *desired.add_desired_modules() = Module("m", 2, "x86_64-v2", 9);
  ASSERT_TRUE(manager.Reconcile(desired, Fetcher()).ok());
  EXPECT_EQ(states(), (std::vector<std::string>{"2 running", "1 previous"}));
  EXPECT_TRUE(runner.Candidates().empty());

  // A candidate that does not verify is reported failed; what serves goes on serving.
  v1::ShadowModule* bad = desired.add_shadow_modules();
  *bad->mutable_module() = Module("m", 3, "x86_64-v2", 5);
  bad->mutable_module()->set_signature(std::string(128, '0'));
  EXPECT_FALSE(manager.Reconcile(desired, Fetcher()).ok());
  EXPECT_EQ(states(), (std::vector<std::string>{"2 running", "1 previous", "3 failed"}));
  EXPECT_EQ(host.Active("m")->ref().version(), 2);
}

TEST(OutputsAgreeTest, ArgmaxValueOrTolerance) {
  elm_module m{};
  m.num_outputs = 1;
  using T = std::vector<std::vector<float>>;
  EXPECT_TRUE(OutputsAgree(m, T{{0.1f, 0.7f, 0.2f}}, T{{0.3f, 0.4f, 0.3f}}, 0));
  EXPECT_FALSE(OutputsAgree(m, T{{0.1f, 0.7f, 0.2f}}, T{{0.5f, 0.4f, 0.1f}}, 0));
  EXPECT_TRUE(OutputsAgree(m, T{{1.5f}}, T{{1.5f}}, 0));
  EXPECT_FALSE(OutputsAgree(m, T{{1.5f}}, T{{1.50001f}}, 0));
  EXPECT_TRUE(OutputsAgree(m, T{{1.5f}}, T{{1.55f}}, 0.1));
  EXPECT_FALSE(OutputsAgree(m, T{{1.5f, 2.0f}}, T{{1.55f, 2.2f}}, 0.1));
  EXPECT_FALSE(OutputsAgree(m, T{{NAN}}, T{{NAN}}, 0.1));
}

}  // namespace
}  // namespace edgeloop::agent

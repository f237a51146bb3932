#include "fleet/device_registry.h"

#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/hardware.h"
#include "common/random.h"
#include "common/testing/fake_clock.h"
#include "compiler/testing/onnx_models.h"
#include "fleet/desired_change.h"
#include "fleet/schema.h"
#include "fleet/testing/profiles.h"
#include "fleet/testing/test_fleet.h"
#include "gtest/gtest.h"
#include "registry/registry.h"
#include "registry/schema.h"
#include "store/blob_store.h"
#include "store/testing/test_database.h"

namespace edgeloop::fleet {
namespace {
namespace fs = std::filesystem;

using testing::Orin;
using testing::Pi4;
using testing::Profile;

/// The fleet suite on SQLite and on PostgreSQL.
class DeviceRegistryTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "edgeloop-fleet-", RandomHex(6));
    fs::create_directories(dir_);
    auto fleet = testing::TestFleet::Create(
        {.driver = GetParam(), .dir = dir_, .clock = &clock_, .more_components = {}});
    ASSERT_TRUE(fleet.ok()) << fleet.status();
    fleet_ = std::move(*fleet);
  }
  void TearDown() override {
    fleet_.reset();
    fs::remove_all(dir_);
  }

  std::string Token(int max_uses, std::map<std::string, std::string> labels = {},
                    int64_t ttl = 3600) {
    v1::CreateEnrollmentTokenRequest r;
    r.set_max_uses(max_uses);
    r.set_ttl_seconds(ttl);
    r.mutable_labels()->insert(labels.begin(), labels.end());
    auto created = fleet_->tokens->Create(r, "alice");
    EXPECT_TRUE(created.ok()) << created.status();
    return created->secret();
  }

  absl::StatusOr<v1::EnrollResponse> Enroll(const std::string& token,
                                            const v1::HardwareProfile& profile,
                                            const std::string& serial = "SN-1") {
    auto csr = crypto::GenerateKeyAndCsr("device");
    EXPECT_TRUE(csr.ok());
    v1::EnrollRequest r;
    r.set_token(token);
    r.set_csr_pem(csr->csr_pem);
    *r.mutable_profile() = profile;
    r.set_serial(serial);
    return fleet_->devices->Enroll(r);
  }

  int64_t Model(const std::string& name,
                const std::map<int64_t, std::vector<std::string>>& targets_by_version) {
    auto id = fleet_->AddModel(name, compiler::testing::MlpOnnx(4, 4, 2), targets_by_version);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : 0;
  }
  absl::Status SetAlias(const std::string& model, const std::string& alias, int64_t version) {
    v1::SetAliasRequest r;
    r.set_model(model);
    r.set_alias(alias);
    r.set_version(version);
    return fleet_->models->SetAlias(r, "t").status();
  }
  static std::string ModuleDigest(const std::string& model, int64_t version,
                                  const std::string& target) {
    return testing::TestFleet::ModuleDigest(model, version, target);
  }
  // What the device is told to run, as "model vN target".
  std::vector<std::string> Desired(const std::string& device_id, int64_t* generation = nullptr) {
    v1::SyncRequest sync;
    auto response = fleet_->devices->Sync(device_id, sync);
    EXPECT_TRUE(response.ok()) << response.status();
    if (generation) *generation = response->desired_generation();
    // What Watch pushes is the same state, without recording a sync.
    auto pushed = fleet_->devices->DesiredState(device_id);
    EXPECT_TRUE(pushed.ok()) << pushed.status();
    v1::SyncResponse desired_part = *response;
    desired_part.clear_next_sync_ms();
    desired_part.clear_send_profile();
    EXPECT_EQ(pushed->DebugString(), desired_part.DebugString());
    std::vector<std::string> out;
    for (const auto& m : response->desired_modules()) {
      EXPECT_EQ(m.digest(), ModuleDigest(m.model(), m.version(), m.target()));
      EXPECT_TRUE(absl::StrContains(m.manifest(), m.target()));
      EXPECT_EQ(m.signature(), "sig");
      out.push_back(absl::StrCat(m.model(), " v", m.version(), " ", m.target()));
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  absl::StatusOr<v1::Assignment> Assign(const std::string& model, const std::string& selector,
                                        const std::string& device, int64_t version,
                                        const std::string& alias = "") {
    v1::AssignModelRequest r;
    r.set_model(model);
    r.set_selector(selector);
    r.set_device_id(device);
    r.set_version(version);
    r.set_alias(alias);
    return fleet_->assignments->Assign(r, "alice");
  }

  int64_t DeviceCount() {
    auto rows = fleet_->db->Query("SELECT COUNT(*) AS n FROM devices", {});
    return rows.ok() ? (*rows)[0].Int("n") : -1;
  }

  std::vector<std::string> Ids(const std::string& selector) {
    v1::ListDevicesRequest r;
    r.set_selector(selector);
    auto list = fleet_->devices->List(r);
    EXPECT_TRUE(list.ok()) << list.status();
    std::vector<std::string> ids;
    for (const auto& d : list->devices()) ids.push_back(d.serial());
    return ids;
  }

  std::string dir_;
  edgeloop::testing::FakeClock clock_;
  std::unique_ptr<testing::TestFleet> fleet_;
};

// The transaction's side of the change feed: what PublishDesiredChange asks it to publish.
class PublishedPayloads final : public store::Transaction {
 public:
  absl::StatusOr<store::Rows> Query(absl::string_view, const std::vector<store::Value>&) override {
    return store::Rows();
  }
  absl::StatusOr<int64_t> Execute(absl::string_view, const std::vector<store::Value>&) override {
    return 0;
  }
  absl::Status ExecuteScript(absl::string_view) override { return absl::OkStatus(); }
  absl::Status Commit() override { return absl::OkStatus(); }
  absl::Status Publish(absl::string_view channel, absl::string_view payload) override {
    EXPECT_EQ(channel, kDesiredChangeChannel);
    payloads.emplace_back(payload);
    return absl::OkStatus();
  }
  std::vector<std::string> payloads;
};

TEST(DesiredChangeTest, IdsGoSeveralToAPayloadWithinPostgresLimit) {
  std::vector<std::string> ids;
  for (int i = 0; i < 2000; ++i) ids.push_back(absl::StrCat("dev-", RandomHex(8)));
  PublishedPayloads tx;
  ASSERT_TRUE(PublishDesiredChange(tx, ids).ok());
  ASSERT_GT(tx.payloads.size(), 1u);
  std::vector<std::string> heard;
  for (const std::string& p : tx.payloads) {
    EXPECT_LT(p.size(), 8000u);
    for (std::string& id : ParseDesiredChange(p)) heard.push_back(std::move(id));
  }
  EXPECT_EQ(heard, ids);
  // No ids: every device's, which is the payload a reconnecting feed also gives.
  PublishedPayloads all;
  ASSERT_TRUE(PublishDesiredChange(all).ok());
  EXPECT_EQ(all.payloads, std::vector<std::string>{""});
  EXPECT_TRUE(ParseDesiredChange("").empty());
}

TEST_P(DeviceRegistryTest, EnrollIssuesACertificateForTheNewId) {
  v1::HardwareProfile claimed = Pi4();
  claimed.set_target("x86_64-v4");  // a device's claim is not trusted
  (*claimed.mutable_labels())["site"] = "agent-says";
  (*claimed.mutable_labels())["role"] = "camera";
  auto enrolled = Enroll(Token(1, {{"site", "plant-3"}}), claimed);
  ASSERT_TRUE(enrolled.ok()) << enrolled.status();
  EXPECT_TRUE(absl::StartsWith(enrolled->device_id(), "dev-"));
  EXPECT_EQ(enrolled->ca_pem(), fleet_->ca->cert_pem());
  auto info = crypto::InspectCertificate(enrolled->cert_pem());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->common_name, enrolled->device_id());

  auto device = fleet_->devices->Get(enrolled->device_id());
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(device->status(), v1::ACTIVE);
  EXPECT_EQ(device->profile().target(), "aarch64-v8");
  EXPECT_EQ(device->labels().at("site"), "plant-3");  // the token's labels win
  EXPECT_EQ(device->labels().at("role"), "camera");
  EXPECT_EQ(device->serial(), "SN-1");
  EXPECT_TRUE(device->online());
}

TEST_P(DeviceRegistryTest, BadTokensAreRefusedWithAReasonAndCreateNothing) {
  std::string once = Token(1);
  ASSERT_TRUE(Enroll(once, Pi4()).ok());
  auto used_up = Enroll(once, Pi4());
  EXPECT_EQ(used_up.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(used_up.status().message(), "used up")) << used_up.status();

  std::string expiring = Token(5, {}, 60);
  clock_.Advance(absl::Minutes(2));
  auto expired = Enroll(expiring, Pi4());
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(expired.status().message(), "expired")) << expired.status();

  std::string revoked = Token(5);
  ASSERT_TRUE(fleet_->tokens->Revoke(revoked.substr(0, 16)).ok());
  auto refused = Enroll(revoked, Pi4());
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "revoked")) << refused.status();

  std::string good = Token(5);
  std::string wrong_secret = good.substr(0, 17) + std::string(64, 'a') + good.substr(81);
  EXPECT_EQ(Enroll(wrong_secret, Pi4()).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Enroll("garbage", Pi4()).status().code(), absl::StatusCode::kUnauthenticated);
  std::string other_server = good.substr(0, 82) + std::string(64, '0');
  auto pin = Enroll(other_server, Pi4());
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(absl::StrContains(pin.status().message(), "pin")) << pin.status();

  // A bad CSR or profile fails before the token is spent.
  v1::EnrollRequest bad_csr;
  bad_csr.set_token(good);
  bad_csr.set_csr_pem(
      "-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n");
  *bad_csr.mutable_profile() = Pi4();
  EXPECT_EQ(fleet_->devices->Enroll(bad_csr).status().code(), absl::StatusCode::kInvalidArgument);
  v1::HardwareProfile negative = Pi4();
  negative.set_ram_mb(-512);
  EXPECT_EQ(Enroll(good, negative).status().code(), absl::StatusCode::kInvalidArgument);
  v1::HardwareProfile huge = Pi4();
  (*huge.mutable_labels())["notes"] = std::string(10 << 20, 'x');
  EXPECT_EQ(Enroll(good, huge).status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(DeviceCount(), 1);
  auto listed = fleet_->tokens->List(v1::ListEnrollmentTokensRequest());
  for (const auto& t : listed->tokens()) {
    if (absl::StartsWith(good, t.id())) {
      EXPECT_EQ(t.uses(), 0);
    }
  }
}

TEST_P(DeviceRegistryTest, RacingDevicesCannotOverspendAToken) {
  std::string token = Token(3);
  std::atomic<int> enrolled{0}, refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto r = Enroll(token, Pi4(), absl::StrCat("SN-", i));
      (r.ok() ? enrolled : refused)++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(enrolled, 3);
  EXPECT_EQ(refused, 5);
  EXPECT_EQ(DeviceCount(), 3);
}

TEST_P(DeviceRegistryTest, ARetriedEnrollFindsTheDeviceItsLostAnswerCreated) {
  std::string token = Token(1);
  auto csr = crypto::GenerateKeyAndCsr("pending");
  ASSERT_TRUE(csr.ok());
  v1::EnrollRequest request;
  request.set_token(token);
  request.set_csr_pem(csr->csr_pem);
  *request.mutable_profile() = Pi4();
  request.set_serial("SN-7");
  auto first = fleet_->devices->Enroll(request);
  ASSERT_TRUE(first.ok()) << first.status();
  clock_.Advance(absl::Minutes(5));
  auto retried = fleet_->devices->Enroll(request);  // the first answer never arrived
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->device_id(), first->device_id());
  auto info = crypto::InspectCertificate(retried->cert_pem());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->common_name, first->device_id());
  EXPECT_EQ(DeviceCount(), 1);

  // Another key, or another serial, with the spent token is a new device and is refused.
  auto other_key = Enroll(token, Pi4(), "SN-7");
  EXPECT_TRUE(absl::StrContains(other_key.status().message(), "used up")) << other_key.status();
  request.set_serial("SN-8");
  EXPECT_EQ(fleet_->devices->Enroll(request).status().code(), absl::StatusCode::kPermissionDenied);
  request.set_serial("SN-7");
  // A wrong secret is refused even with the right key and serial.
  request.set_token(token.substr(0, 17) + std::string(64, 'a') + token.substr(81));
  EXPECT_EQ(fleet_->devices->Enroll(request).status().code(), absl::StatusCode::kUnauthenticated);
  // After the token's lifetime the retry is refused too.
  request.set_token(token);
  clock_.Advance(absl::Hours(2));
  auto late = fleet_->devices->Enroll(request);
  EXPECT_TRUE(absl::StrContains(late.status().message(), "expired")) << late.status();
  EXPECT_EQ(DeviceCount(), 1);
}

TEST_P(DeviceRegistryTest, AnExpiredDeviceReEnrollsWithItsKeyAndKeepsItsId) {
  auto csr = crypto::GenerateKeyAndCsr("pending");
  ASSERT_TRUE(csr.ok());
  v1::EnrollRequest request;
  request.set_token(Token(1, {{"site", "plant-3"}}));
  request.set_csr_pem(csr->csr_pem);
  *request.mutable_profile() = Pi4();
  (*request.mutable_profile()->mutable_labels())["role"] = "camera";
  request.set_serial("SN-9");
  auto first = fleet_->devices->Enroll(request);
  ASSERT_TRUE(first.ok()) << first.status();
  clock_.Advance(absl::Hours(24 * 400));  // offline past the certificate's validity

  request.set_token(Token(1, {{"site", "plant-4"}}));
  request.set_device_id(first->device_id());
  auto again = fleet_->devices->Enroll(request);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->device_id(), first->device_id());
  auto device = fleet_->devices->Get(first->device_id());
  ASSERT_TRUE(device.ok());
  EXPECT_EQ(device->labels().at("site"), "plant-4");  // the new token's labels win
  EXPECT_EQ(device->labels().at("role"), "camera");   // the device's own stay
  EXPECT_GT(absl::FromUnixSeconds(device->cert_expire_time().seconds()), clock_.Now());
  EXPECT_EQ(DeviceCount(), 1);

  // Only the key the device enrolled with may re-enroll it.
  auto thief = crypto::GenerateKeyAndCsr("pending");
  request.set_csr_pem(thief->csr_pem);
  request.set_token(Token(1));
  auto refused = fleet_->devices->Enroll(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "another key")) << refused.status();
  request.set_device_id("dev-nonexistent");
  EXPECT_EQ(fleet_->devices->Enroll(request).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(DeviceRegistryTest, DevicesMayNotSetReservedLabels) {
  for (const char* key : {"hw.target", "edgeloop.rollout"}) {
    v1::HardwareProfile profile = Pi4();
    (*profile.mutable_labels())[key] = "x86_64-v4";
    auto refused = Enroll(Token(1), profile);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << key;
    EXPECT_TRUE(absl::StrContains(refused.status().message(), "reserved")) << refused.status();
  }
  EXPECT_EQ(DeviceCount(), 0);
}

TEST_P(DeviceRegistryTest, SyncRecordsStateAndIsBoundToTheDevice) {
  auto a = Enroll(Token(2), Pi4(), "A");
  auto b = Enroll(Token(2), Pi4(), "B");
  ASSERT_TRUE(a.ok() && b.ok());
  clock_.Advance(absl::Minutes(5));
  EXPECT_FALSE(fleet_->devices->Get(a->device_id())->online());

  v1::SyncRequest sync;
  sync.mutable_state()->set_agent_version("0.1.0");
  sync.mutable_state()->set_profile_hash(ProfileHash(Pi4()));
  sync.mutable_state()->mutable_health()->set_load1(0.5);
  auto response = fleet_->devices->Sync(a->device_id(), sync);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_FALSE(response->send_profile());
  EXPECT_GE(response->next_sync_ms(), 24000);  // 30 s ± 20 %
  EXPECT_LE(response->next_sync_ms(), 36000);
  EXPECT_EQ(response->desired_modules_size(), 0);
  auto device = fleet_->devices->Get(a->device_id());
  EXPECT_TRUE(device->online());
  EXPECT_DOUBLE_EQ(device->state().health().load1(), 0.5);

  // The profile changed on the device (RAM upgrade): the server asks for it, then stores it.
  sync.mutable_state()->set_profile_hash(ProfileHash(Orin()));
  EXPECT_TRUE(fleet_->devices->Sync(a->device_id(), sync)->send_profile());
  *sync.mutable_profile() = Orin();
  EXPECT_FALSE(fleet_->devices->Sync(a->device_id(), sync)->send_profile());
  EXPECT_EQ(fleet_->devices->Get(a->device_id())->profile().target(), "aarch64-v8.2-dotprod");

  v1::SyncRequest impostor;
  impostor.set_device_id(b->device_id());
  EXPECT_EQ(fleet_->devices->Sync(a->device_id(), impostor).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(fleet_->devices->Sync("dev-unknown", v1::SyncRequest()).status().code(),
            absl::StatusCode::kNotFound);
  v1::SyncRequest absurd;
  absurd.mutable_profile()->set_arch("aarch64");
  absurd.mutable_profile()->set_cores(-3);
  EXPECT_EQ(fleet_->devices->Sync(a->device_id(), absurd).status().code(),
            absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(fleet_->devices->Decommission(b->device_id()).ok());
  EXPECT_EQ(fleet_->devices->Sync(b->device_id(), v1::SyncRequest()).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(fleet_->devices->CheckActive(b->device_id()).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(fleet_->devices->DesiredState(b->device_id()).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(fleet_->devices->DesiredState("dev-unknown").status().code(),
            absl::StatusCode::kNotFound);
  auto csr = crypto::GenerateKeyAndCsr("x");
  v1::RenewRequest renew;
  renew.set_csr_pem(csr->csr_pem);
  EXPECT_EQ(fleet_->devices->Renew(b->device_id(), renew).status().code(),
            absl::StatusCode::kPermissionDenied);
  auto renewed = fleet_->devices->Renew(a->device_id(), renew);
  ASSERT_TRUE(renewed.ok());
  EXPECT_EQ(crypto::InspectCertificate(renewed->cert_pem())->common_name, a->device_id());
}

TEST_P(DeviceRegistryTest, SelectorsOverLabelsAndHardware) {
  ASSERT_TRUE(Enroll(Token(1, {{"site", "plant-3"}, {"tier", "prod"}}), Pi4(), "pi").ok());
  ASSERT_TRUE(Enroll(Token(1, {{"site", "plant-1"}, {"env", "canary"}}), Orin(), "orin").ok());
  v1::HardwareProfile nuc = Profile("x86_64", {}, 16000);
  ASSERT_TRUE(Enroll(Token(1, {{"site", "plant-3"}, {"env", "prod"}}), nuc, "nuc").ok());

  EXPECT_EQ(Ids("").size(), 3u);
  EXPECT_EQ(Ids("site=plant-3,tier!=test").size(), 2u);
  EXPECT_EQ(Ids("env in (prod,canary)").size(), 2u);
  EXPECT_EQ(Ids("hw.arch=aarch64,hw.ram_mb>=4096"), std::vector<std::string>{"orin"});
  EXPECT_EQ(Ids("hw.target=aarch64-v8"), std::vector<std::string>{"pi"});
  EXPECT_EQ(Ids("hw.accel=dri"), std::vector<std::string>{"orin"});
  EXPECT_EQ(Ids("!hw.accel,hw.cores<8").size(), 2u);
  v1::ListDevicesRequest bad;
  bad.set_selector("site in plant");
  EXPECT_EQ(fleet_->devices->List(bad).status().code(), absl::StatusCode::kInvalidArgument);

  v1::ListDevicesRequest paged;
  paged.set_page_size(2);
  auto first = fleet_->devices->List(paged);
  ASSERT_EQ(first->devices_size(), 2);
  ASSERT_FALSE(first->next_page_token().empty());
  paged.set_page_token(first->next_page_token());
  EXPECT_EQ(fleet_->devices->List(paged)->devices_size(), 1);
}

TEST_P(DeviceRegistryTest, LabelEditsBumpTheGenerationAndWakeWatchers) {
  auto d = Enroll(Token(1), Pi4());
  ASSERT_TRUE(d.ok());
  const int64_t before = *fleet_->devices->Generation(d->device_id());
  std::vector<std::string> told;
  fleet_->devices->SetChangeListener([&](absl::string_view id) { told.emplace_back(id); });
  v1::UpdateDeviceRequest update;
  update.set_id(d->device_id());
  (*update.mutable_labels())["room"] = "B12";
  auto updated = fleet_->devices->Update(update);
  EXPECT_EQ(told, std::vector<std::string>{d->device_id()});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->labels().at("room"), "B12");
  EXPECT_EQ(*fleet_->devices->Generation(d->device_id()), before + 1);
  update.clear_labels();
  update.add_remove_labels("room");
  EXPECT_EQ(fleet_->devices->Update(update)->labels().count("room"), 0u);
  update.set_id("dev-nobody");
  EXPECT_EQ(fleet_->devices->Update(update).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fleet_->devices->Decommission("dev-nobody").status().code(),
            absl::StatusCode::kNotFound);

  auto counts = fleet_->devices->Counts();
  ASSERT_TRUE(counts.ok());
  ASSERT_EQ(counts->size(), 1u);
  EXPECT_EQ((*counts)[0].target, "aarch64-v8");
  EXPECT_TRUE((*counts)[0].online);
}

TEST_P(DeviceRegistryTest, CachedMembersFollowStateLabelsAndDecommissions) {
  auto a = Enroll(Token(1, {{"site", "a"}}), Pi4(), "A");
  auto b = Enroll(Token(1, {{"site", "b"}}), Pi4(), "B");
  ASSERT_TRUE(a.ok() && b.ok());
  MemberCache cache;
  auto site_a = Selector::Parse("site=a");
  ASSERT_TRUE(site_a.ok());
  auto read = [&](const Selector& s) {
    auto members = DeviceRegistry::Members(*fleet_->db, s, &cache);
    EXPECT_TRUE(members.ok()) << members.status();
    // The cache answers exactly what an uncached read does.
    auto uncached = DeviceRegistry::Members(*fleet_->db, s);
    EXPECT_TRUE(uncached.ok());
    EXPECT_EQ(members->size(), uncached->size());
    for (size_t i = 0; i < members->size() && i < uncached->size(); ++i) {
      EXPECT_EQ((*members)[i].id, (*uncached)[i].id);
      EXPECT_EQ((*members)[i].attributes, (*uncached)[i].attributes);
      EXPECT_EQ((*members)[i].last_seen_ms, (*uncached)[i].last_seen_ms);
      EXPECT_EQ((*members)[i].state.DebugString(), (*uncached)[i].state.DebugString());
    }
    return *std::move(members);
  };
  EXPECT_EQ(read(*site_a).size(), 1u);
  // A new reported state and a later last-seen time are read, not the cached ones.
  clock_.Advance(absl::Seconds(7));
  v1::SyncRequest sync;
  sync.mutable_state()->set_agent_version("9.9");
  ASSERT_TRUE(fleet_->devices->Sync(a->device_id(), sync).ok());
  std::vector<FleetMember> now = read(Selector());
  ASSERT_EQ(now.size(), 2u);
  for (const FleetMember& m : now) {
    if (m.id == a->device_id()) {
      EXPECT_EQ(m.state.agent_version(), "9.9");
    }
  }
  // So is a label edit, and a decommissioned device leaves.
  v1::UpdateDeviceRequest update;
  update.set_id(b->device_id());
  (*update.mutable_labels())["site"] = "a";
  ASSERT_TRUE(fleet_->devices->Update(update).ok());
  EXPECT_EQ(read(*site_a).size(), 2u);
  ASSERT_TRUE(fleet_->devices->Decommission(a->device_id()).ok());
  EXPECT_EQ(read(*site_a).size(), 1u);
}

TEST_P(DeviceRegistryTest, TouchingDevicesMovesOnlyTheirGeneration) {
  auto a = Enroll(Token(1), Pi4(), "A");
  auto b = Enroll(Token(1), Pi4(), "B");
  ASSERT_TRUE(a.ok() && b.ok());
  const int64_t a0 = *fleet_->devices->Generation(a->device_id());
  const int64_t b0 = *fleet_->devices->Generation(b->device_id());
  ASSERT_TRUE(store::RunInTransaction(*fleet_->db, [&](store::Transaction& tx) {
                return DeviceRegistry::TouchDevices(tx, {a->device_id()});
              }).ok());
  EXPECT_EQ(*fleet_->devices->Generation(a->device_id()), a0 + 1);
  EXPECT_EQ(*fleet_->devices->Generation(b->device_id()), b0);
  std::vector<std::string> told;
  fleet_->devices->SetChangeListener([&](absl::string_view id) { told.emplace_back(id); });
  fleet_->devices->WakeWatchers({a->device_id(), b->device_id()});
  EXPECT_EQ(told, (std::vector<std::string>{a->device_id(), b->device_id()}));
}

TEST_P(DeviceRegistryTest, AssignmentsTellEachDeviceItsBestModule) {
  const std::string token = Token(2);
  auto pi = Enroll(token, Pi4(), "pi");       // aarch64-v8
  auto orin = Enroll(token, Orin(), "orin");  // aarch64-v8.2-dotprod
  ASSERT_TRUE(pi.ok() && orin.ok());
  ASSERT_TRUE(fleet_->devices
                  ->Update([&] {
                    v1::UpdateDeviceRequest r;
                    r.set_id(pi->device_id());
                    (*r.mutable_labels())["site"] = "a";
                    return r;
                  }())
                  .ok());
  Model("det", {{1, {"aarch64-v8", "aarch64-v8.2-dotprod", "x86_64-v2"}},
                {2, {"aarch64-v8", "x86_64-v3"}},
                {3, {"x86_64-v2"}}});
  int64_t before = 0, after = 0;
  EXPECT_TRUE(Desired(pi->device_id(), &before).empty());  // nothing assigned yet

  // A selector: each device gets the highest class it runs.
  ASSERT_TRUE(Assign("det", "hw.arch=aarch64", "", 1).ok());
  EXPECT_EQ(Desired(pi->device_id(), &after), std::vector<std::string>{"det v1 aarch64-v8"});
  EXPECT_NE(after, before);  // watchers see the change
  EXPECT_EQ(Desired(orin->device_id()), std::vector<std::string>{"det v1 aarch64-v8.2-dotprod"});
  // A newer assignment for one device wins there; v2 has no dotprod module, v8 runs on Orin.
  ASSERT_TRUE(Assign("det", "", orin->device_id(), 2).ok());
  EXPECT_EQ(Desired(orin->device_id()), std::vector<std::string>{"det v2 aarch64-v8"});
  EXPECT_EQ(Desired(pi->device_id()), std::vector<std::string>{"det v1 aarch64-v8"});
  // A version with nothing the device can run is left out (the old assignment does not come back).
  ASSERT_TRUE(Assign("det", "site=a", "", 3).ok());
  EXPECT_TRUE(Desired(pi->device_id()).empty());
  // Aliases are followed as they move; another model is another slot.
  ASSERT_TRUE(SetAlias("det", "prod", 1).ok());
  ASSERT_TRUE(Assign("det", "site=a", "", 0, "prod").ok());
  Model("kws", {{1, {"aarch64-v8"}}});
  ASSERT_TRUE(Assign("kws", "", pi->device_id(), 1).ok());
  EXPECT_EQ(Desired(pi->device_id()),
            (std::vector<std::string>{"det v1 aarch64-v8", "kws v1 aarch64-v8"}));
  ASSERT_TRUE(SetAlias("det", "prod", 2).ok());
  ASSERT_TRUE(fleet_->assignments->Touch().ok());
  int64_t moved = 0;
  EXPECT_EQ(Desired(pi->device_id(), &moved),
            (std::vector<std::string>{"det v2 aarch64-v8", "kws v1 aarch64-v8"}));
  EXPECT_NE(moved, after);
  // Operators see the same on the device.
  auto device = fleet_->devices->Get(pi->device_id());
  ASSERT_TRUE(device.ok());
  EXPECT_EQ(device->desired_modules_size(), 2);
  v1::ListAssignmentsRequest of_det;
  of_det.set_model("det");
  auto list = fleet_->assignments->List(of_det);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->assignments_size(), 4);
  EXPECT_EQ(list->assignments(0).alias(), "prod");  // newest first
  EXPECT_EQ(list->assignments(0).created_by(), "alice");
}

TEST_P(DeviceRegistryTest, BadAssignmentsAreRefusedWithTheReason) {
  auto pi = Enroll(Token(1), Pi4());
  ASSERT_TRUE(pi.ok());
  Model("det", {{1, {"aarch64-v8"}}});
  auto refused = [&](absl::StatusOr<v1::Assignment> a, absl::StatusCode code,
                     const std::string& why) {
    EXPECT_EQ(a.status().code(), code) << a.status();
    EXPECT_TRUE(absl::StrContains(a.status().message(), why)) << a.status();
  };
  refused(Assign("det", "", "", 1), absl::StatusCode::kInvalidArgument, "exactly one of selector");
  refused(Assign("det", "a=b", pi->device_id(), 1), absl::StatusCode::kInvalidArgument,
          "exactly one of selector");
  refused(Assign("det", "a=b", "", 0), absl::StatusCode::kInvalidArgument,
          "exactly one of version and alias");
  refused(Assign("det", "a=b", "", 1, "prod"), absl::StatusCode::kInvalidArgument,
          "exactly one of version and alias");
  refused(Assign("det", "a in (", "", 1), absl::StatusCode::kInvalidArgument, "a in (");
  refused(Assign("nope", "a=b", "", 1), absl::StatusCode::kNotFound, "model \"nope\"");
  refused(Assign("det", "a=b", "", 7), absl::StatusCode::kNotFound, "no version 7");
  refused(Assign("det", "a=b", "", 0, "prod"), absl::StatusCode::kNotFound, "no alias \"prod\"");
  refused(Assign("det", "", "dev-ghost", 1), absl::StatusCode::kNotFound, "dev-ghost");
  auto list = fleet_->assignments->List(v1::ListAssignmentsRequest());
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->assignments_size(), 0);  // nothing half-recorded
}

INSTANTIATE_TEST_SUITE_P(Drivers, DeviceRegistryTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

TEST(SyncPacerTest, JittersAndBacksOffUnderLoad) {
  edgeloop::testing::FakeClock clock;
  SyncPacer pacer(absl::Seconds(30), /*capacity_per_second=*/10, &clock);
  absl::Duration lo = absl::InfiniteDuration(), hi = absl::ZeroDuration();
  for (int i = 0; i < 50; ++i) {
    clock.Advance(absl::Seconds(1));  // 1 sync/s: below capacity
    absl::Duration d = pacer.Next();
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_GE(lo, absl::Seconds(24));
  EXPECT_LE(hi, absl::Seconds(36));
  EXPECT_GT(hi - lo, absl::Seconds(3));  // actually spread
  // 1000 syncs in one second: 100 per second over the window, 10x capacity.
  absl::Duration last;
  for (int i = 0; i < 1000; ++i) last = pacer.Next();
  EXPECT_GE(last, absl::Seconds(30) * 0.8 * 9);
}

}  // namespace
}  // namespace edgeloop::fleet

#include "server/module_signing_key.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/random.h"
#include "common/signing.h"
#include "gtest/gtest.h"
#include "registry/schema.h"
#include "store/testing/test_database.h"

namespace edgeloop::server {
namespace {

namespace fs = std::filesystem;

class ModuleSigningKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "edgeloop-signing-key-", RandomHex(6));
    fs::create_directories(dir_);
    auto ca = crypto::CertificateAuthority::LoadOrCreate(dir_ + "/ca", absl::Now());
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(*ca);
    auto db = store::testing::OpenTestDatabase("sqlite", dir_, {&registry::Migrations()});
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
  }
  void TearDown() override { fs::remove_all(dir_); }

  absl::StatusOr<ModuleSigningKey> Load(bool rotate) {
    return LoadModuleSigningKey(dir_, *ca_, *db_, rotate);
  }

  std::string dir_;
  std::unique_ptr<crypto::CertificateAuthority> ca_;
  std::unique_ptr<store::Database> db_;
};

TEST_F(ModuleSigningKeyTest, ARotationCutOffByACrashResumesAtTheNextStart) {
  auto first = Load(false);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string old_key = first->signer->public_key_pem();
  EXPECT_TRUE(first->trust.previous_key_pem().empty());
  // What a crash leaves after `--rotate-signing-key` made the next key and before it took the
  // old one's place (the hand-over may or may not have been written).
  auto next = crypto::SigningKey::LoadOrCreate(dir_ + "/signing.key.next");
  ASSERT_TRUE(next.ok());
  const std::string new_key = (*next)->public_key_pem();
  ASSERT_NE(new_key, old_key);

  // Restarted without the flag: the rotation finishes, to the key it had begun with.
  auto resumed = Load(false);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->signer->public_key_pem(), new_key);
  EXPECT_EQ(resumed->trust.key_pem(), new_key);
  EXPECT_EQ(resumed->trust.previous_key_pem(), old_key);
  EXPECT_TRUE(crypto::VerifySignature(old_key,
                                      crypto::SigningKeyRotationStatement(old_key, new_key),
                                      resumed->trust.rotation_signature()));
  EXPECT_TRUE(crypto::VerifyEndorsement(ca_->cert_pem(), crypto::SigningKeyStatement(new_key),
                                        resumed->trust.ca_signature()));
  EXPECT_FALSE(fs::exists(dir_ + "/signing.key.next"));

  // A later start keeps that key and hand-over: nothing rotates again.
  auto again = Load(false);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->signer->public_key_pem(), new_key);
  EXPECT_EQ(again->trust.previous_key_pem(), old_key);
}

}  // namespace
}  // namespace edgeloop::server

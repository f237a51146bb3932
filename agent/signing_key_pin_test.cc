// Which module signing key a device accepts: its pin, or a successor that proves itself.
#include "agent/signing_key_pin.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/random.h"
#include "common/signing.h"
#include "common/x509.h"
#include "gtest/gtest.h"

namespace edgeloop::agent {
namespace {
namespace fs = std::filesystem;

class SigningKeyPinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/pin-", RandomHex(6));
    fs::create_directories(dir_);
    ca_ = *crypto::CertificateAuthority::LoadOrCreate(dir_ + "/ca", absl::Now());
    other_ca_ = *crypto::CertificateAuthority::LoadOrCreate(dir_ + "/other-ca", absl::Now());
    pinned_ = *crypto::SigningKey::LoadOrCreate(dir_ + "/pinned.key");
    next_ = *crypto::SigningKey::LoadOrCreate(dir_ + "/next.key");
  }
  void TearDown() override { fs::remove_all(dir_); }

  v1::SigningKeyTrust Endorsed(const crypto::SigningKey& key,
                               const crypto::CertificateAuthority& ca) {
    v1::SigningKeyTrust t;
    t.set_key_pem(key.public_key_pem());
    t.set_ca_signature(*ca.Endorse(crypto::SigningKeyStatement(key.public_key_pem())));
    return t;
  }
  v1::SigningKeyTrust HandedOver(const crypto::SigningKey& from, const crypto::SigningKey& to) {
    v1::SigningKeyTrust t;
    t.set_key_pem(to.public_key_pem());
    t.set_previous_key_pem(from.public_key_pem());
    t.set_rotation_signature(*from.Sign(
        crypto::SigningKeyRotationStatement(from.public_key_pem(), to.public_key_pem())));
    return t;
  }

  std::string dir_;
  std::unique_ptr<crypto::CertificateAuthority> ca_, other_ca_;
  std::unique_ptr<crypto::SigningKey> pinned_, next_;
};

TEST_F(SigningKeyPinTest, ThePinnedKeyStays) {
  const std::string pin = pinned_->public_key_pem();
  v1::SigningKeyTrust same;
  same.set_key_pem(pin);
  EXPECT_EQ(*AcceptSigningKey(pin, ca_->cert_pem(), same), pin);
  EXPECT_EQ(*AcceptSigningKey(pin, ca_->cert_pem(), v1::SigningKeyTrust()), pin);
}

TEST_F(SigningKeyPinTest, ASuccessorTheCaEndorsedOrThePinHandedOverToIsAccepted) {
  const std::string pin = pinned_->public_key_pem();
  EXPECT_EQ(*AcceptSigningKey(pin, ca_->cert_pem(), Endorsed(*next_, *ca_)),
            next_->public_key_pem());
  EXPECT_EQ(*AcceptSigningKey(pin, ca_->cert_pem(), HandedOver(*pinned_, *next_)),
            next_->public_key_pem());
  // A device enrolled before pinning adopts only a key its CA endorsed.
  EXPECT_EQ(*AcceptSigningKey("", ca_->cert_pem(), Endorsed(*next_, *ca_)),
            next_->public_key_pem());
}

TEST_F(SigningKeyPinTest, AnyOtherKeyIsRefused) {
  const std::string pin = pinned_->public_key_pem();
  auto refused = [&](const v1::SigningKeyTrust& offer, const std::string& pinned) {
    return absl::IsPermissionDenied(AcceptSigningKey(pinned, ca_->cert_pem(), offer).status());
  };
  v1::SigningKeyTrust bare;
  bare.set_key_pem(next_->public_key_pem());
  EXPECT_TRUE(refused(bare, pin));
  EXPECT_TRUE(refused(bare, ""));
  EXPECT_TRUE(refused(Endorsed(*next_, *other_ca_), pin));  // another CA's word
  // The new key handing over to itself, or a hand-over from a key that is not the pin.
  EXPECT_TRUE(refused(HandedOver(*next_, *next_), pin));
  auto third = *crypto::SigningKey::LoadOrCreate(dir_ + "/third.key");
  EXPECT_TRUE(refused(HandedOver(*third, *next_), pin));
  // An endorsement of another key, moved onto this one.
  v1::SigningKeyTrust moved = Endorsed(*third, *ca_);
  moved.set_key_pem(next_->public_key_pem());
  EXPECT_TRUE(refused(moved, pin));
  // The CA's signature of a rotation statement is not an endorsement, nor the reverse.
  v1::SigningKeyTrust confused = HandedOver(*pinned_, *next_);
  confused.set_ca_signature(confused.rotation_signature());
  confused.set_rotation_signature(*ca_->Endorse(crypto::SigningKeyRotationStatement(
      pinned_->public_key_pem(), next_->public_key_pem())));
  EXPECT_TRUE(refused(confused, pin));
  EXPECT_TRUE(refused(v1::SigningKeyTrust(), ""));
}

}  // namespace
}  // namespace edgeloop::agent

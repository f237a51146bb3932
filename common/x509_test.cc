#include "common/x509.h"

#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "common/random.h"
#include "common/signing.h"
#include "gtest/gtest.h"

namespace edgeloop::crypto {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

// Verifies `leaf_pem` against `ca_pem` with OpenSSL's own chain verification at `at`.
bool Verifies(const std::string& ca_pem, const std::string& leaf_pem, absl::Time at, int purpose) {
  BIO* ca_bio = BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size()));
  BIO* leaf_bio = BIO_new_mem_buf(leaf_pem.data(), static_cast<int>(leaf_pem.size()));
  X509* ca = PEM_read_bio_X509(ca_bio, nullptr, nullptr, nullptr);
  X509* leaf = PEM_read_bio_X509(leaf_bio, nullptr, nullptr, nullptr);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  X509_STORE_CTX_set_time(ctx, 0, absl::ToTimeT(at));
  X509_STORE_CTX_set_purpose(ctx, purpose);
  bool ok = X509_verify_cert(ctx) == 1;
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  X509_free(leaf);
  X509_free(ca);
  BIO_free(leaf_bio);
  BIO_free(ca_bio);
  return ok;
}

class CertificateAuthorityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/ca-" + RandomHex(4);
    auto ca = CertificateAuthority::LoadOrCreate(dir_, kNow);
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(*ca);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
  std::unique_ptr<CertificateAuthority> ca_;
};

TEST_F(CertificateAuthorityTest, IsCreatedOnceWithAPrivateKeyAndAStablePin) {
  struct stat st;
  ASSERT_EQ(::stat((dir_ + "/ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(absl::StartsWith(ca_->pin(), "sha256:"));
  auto again = CertificateAuthority::LoadOrCreate(dir_, kNow + absl::Hours(1));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->pin(), ca_->pin());
  EXPECT_EQ(*CertificatePin(ca_->cert_pem()), ca_->pin());
  // Half a CA is an error, not a reason to mint a new one.
  std::filesystem::remove(dir_ + "/ca.pem");
  EXPECT_EQ(CertificateAuthority::LoadOrCreate(dir_, kNow).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CertificateAuthorityTest, SignsDeviceCsrWithTheCommonNameItChooses) {
  auto request = GenerateKeyAndCsr("whatever-the-device-asked");
  ASSERT_TRUE(request.ok());
  auto cert = ca_->SignClientCsr(request->csr_pem, "dev-0123", kNow, absl::Hours(24 * 30));
  ASSERT_TRUE(cert.ok()) << cert.status();
  auto info = InspectCertificate(*cert);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->common_name, "dev-0123");
  EXPECT_EQ(info->not_after, kNow + absl::Hours(24 * 30));
  EXPECT_TRUE(Verifies(ca_->cert_pem(), *cert, kNow + absl::Hours(1), X509_PURPOSE_SSL_CLIENT));
  EXPECT_FALSE(Verifies(ca_->cert_pem(), *cert, kNow + absl::Hours(24 * 31), X509_PURPOSE_SSL_CLIENT));
  EXPECT_FALSE(Verifies(ca_->cert_pem(), *cert, kNow, X509_PURPOSE_SSL_SERVER));  // client-only
  // Renewal keeps the key.
  auto renewal = CsrForKey(request->key_pem, "dev-0123");
  ASSERT_TRUE(renewal.ok());
  EXPECT_TRUE(ca_->SignClientCsr(*renewal, "dev-0123", kNow, absl::Hours(1)).ok());
}

TEST_F(CertificateAuthorityTest, RefusesBadCsrs) {
  EXPECT_EQ(ca_->SignClientCsr("not a csr", "d", kNow, absl::Hours(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto request = GenerateKeyAndCsr("d");
  std::string tampered = request->csr_pem;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(ca_->SignClientCsr(tampered, "d", kNow, absl::Hours(1)).ok());
  EXPECT_FALSE(ca_->SignClientCsr(std::string(20000, 'x'), "d", kNow, absl::Hours(1)).ok());

  // A 1024-bit RSA key is refused.
  EVP_PKEY* weak = EVP_RSA_gen(1024);
  X509_REQ* req = X509_REQ_new();
  X509_REQ_set_pubkey(req, weak);
  X509_REQ_sign(req, weak, EVP_sha256());
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509_REQ(bio, req);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  auto weak_result = ca_->SignClientCsr(std::string(data, n), "d", kNow, absl::Hours(1));
  EXPECT_EQ(weak_result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(weak_result.status().message(), "too weak")) << weak_result.status();
  BIO_free(bio);
  X509_REQ_free(req);
  EVP_PKEY_free(weak);
}

TEST_F(CertificateAuthorityTest, IssuesServerIdentityForHostsAndAddresses) {
  auto identity = ca_->IssueServerIdentity({"localhost", "127.0.0.1", "fleet.example.com"}, kNow, absl::Hours(24));
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_TRUE(Verifies(ca_->cert_pem(), identity->cert_pem, kNow, X509_PURPOSE_SSL_SERVER));
  BIO* bio = BIO_new_mem_buf(identity->cert_pem.data(), static_cast<int>(identity->cert_pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  EXPECT_EQ(X509_check_host(cert, "fleet.example.com", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
  EXPECT_NE(X509_check_host(cert, "evil.example.com", 0, 0, nullptr), 1);
  X509_free(cert);
  BIO_free(bio);
}

TEST(SigningKeyTest, SignsAndVerifiesAndPersists) {
  const std::string dir = ::testing::TempDir() + "/sign-" + RandomHex(4);
  std::filesystem::create_directories(dir);
  auto key = SigningKey::LoadOrCreate(dir + "/signing.key");
  ASSERT_TRUE(key.ok()) << key.status();
  struct stat st;
  ASSERT_EQ(::stat((dir + "/signing.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto signature = (*key)->Sign("{\"abi\":1}");
  ASSERT_TRUE(signature.ok());
  EXPECT_TRUE(VerifySignature((*key)->public_key_pem(), "{\"abi\":1}", *signature));
  EXPECT_FALSE(VerifySignature((*key)->public_key_pem(), "{\"abi\":2}", *signature));
  std::string forged = *signature;
  forged[0] = forged[0] == 'a' ? 'b' : 'a';
  EXPECT_FALSE(VerifySignature((*key)->public_key_pem(), "{\"abi\":1}", forged));
  auto again = SigningKey::LoadOrCreate(dir + "/signing.key");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->public_key_pem(), (*key)->public_key_pem());
  // The parsed key is kept between calls: switching keys must not verify under the old one.
  auto other = SigningKey::LoadOrCreate(dir + "/other.key");
  ASSERT_TRUE(other.ok());
  auto other_signature = (*other)->Sign("{\"abi\":1}");
  ASSERT_TRUE(other_signature.ok());
  EXPECT_TRUE(VerifySignature((*other)->public_key_pem(), "{\"abi\":1}", *other_signature));
  EXPECT_FALSE(VerifySignature((*key)->public_key_pem(), "{\"abi\":1}", *other_signature));
  EXPECT_FALSE(VerifySignature((*other)->public_key_pem(), "{\"abi\":1}", *signature));
  EXPECT_TRUE(VerifySignature((*key)->public_key_pem(), "{\"abi\":1}", *signature));
  EXPECT_FALSE(VerifySignature("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n",
                               "{\"abi\":1}", *signature));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace edgeloop::crypto

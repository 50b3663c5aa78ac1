#ifndef CFLOWS_OPENSSL_SHIM_H
#define CFLOWS_OPENSSL_SHIM_H
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Macros Swift cannot import. */
static inline EVP_PKEY *cflows_rsa_generate(unsigned int bits) { return EVP_RSA_gen(bits); }
static inline long cflows_bio_get_mem_data(BIO *bio, char **out) { return BIO_get_mem_data(bio, out); }
static inline void cflows_openssl_free(void *p) { OPENSSL_free(p); }

/* An HMAC-SHA256 context keyed with `key` (OSSL_PARAM keeps the digest name's pointer: a C literal here).
 * Each message after the first re-initialises it with EVP_MAC_init(ctx, NULL, 0, NULL), which keeps the key. */
static inline EVP_MAC_CTX *cflows_hmac_sha256_new(const unsigned char *key, size_t length) {
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) return NULL;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    if (ctx == NULL) return NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(ctx, key, length, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
#endif

#ifndef CFLOWS_OPENSSL_SHIM_H
#define CFLOWS_OPENSSL_SHIM_H
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <limits.h>
#include <string.h>

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

/* Reads the first RSA private key in `pem` (PKCS#1, legacy-encrypted PKCS#1, PKCS#8, encrypted PKCS#8), skipping PEM
 * blocks of other kinds before it (a certificate in the same file), as PEM_read_bio_PrivateKey does. Only the RSA
 * decoders are set up: OpenSSL 3.0 builds a decoder chain per call, and one for every key type costs three times as
 * much (about 300 against 90 microseconds; plain CGI loads the key per request). NULL on failure, with the reason
 * on the error queue; an EC or other non-RSA key fails as "unsupported" (see cflows_pem_pkcs8_algorithm). */
static inline EVP_PKEY *cflows_pem_read_rsa_private_key(const unsigned char *pem, size_t length,
                                                        const unsigned char *passphrase, size_t passphrase_length) {
    if (length > INT_MAX) return NULL;
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *ctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, "RSA", EVP_PKEY_KEYPAIR, NULL, NULL);
    BIO *bio = BIO_new_mem_buf(pem, (int)length);
    if (ctx == NULL || bio == NULL
        || (passphrase_length > 0 && !OSSL_DECODER_CTX_set_passphrase(ctx, passphrase, passphrase_length))) {
        OSSL_DECODER_CTX_free(ctx);
        BIO_free(bio);
        return NULL;
    }
    ERR_set_mark();
    long position = BIO_tell(bio);
    while (!OSSL_DECODER_from_bio(ctx, bio) || pkey == NULL) {
        long next = BIO_tell(bio);
        /* "unsupported": the block read was no RSA key; try the next one, as long as the reader moved on. */
        if (BIO_eof(bio) || next <= position || ERR_GET_REASON(ERR_peek_error()) != ERR_R_UNSUPPORTED) break;
        ERR_pop_to_mark();
        ERR_set_mark();
        position = next;
    }
    ERR_clear_last_mark();
    OSSL_DECODER_CTX_free(ctx);
    BIO_free(bio);
    return pkey;
}

/* The algorithm (NID) of the first PKCS#8 key in `pem` ("BEGIN PRIVATE KEY", or "BEGIN ENCRYPTED PRIVATE KEY"
 * decrypted with the passphrase), read with the ASN.1 parsers alone (no decoder chain); NID_undef when there is
 * none or it cannot be read. Says why an RSA-only read failed: a key of another type. Clears the error queue. */
static inline int cflows_pem_pkcs8_algorithm(const unsigned char *pem, size_t length, const char *passphrase,
                                             size_t passphrase_length) {
    if (length > INT_MAX || passphrase_length > INT_MAX) return NID_undef;
    BIO *bio = BIO_new_mem_buf(pem, (int)length);
    if (bio == NULL) return NID_undef;
    int nid = NID_undef;
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long size = 0;
    while (nid == NID_undef && PEM_read_bio(bio, &name, &header, &data, &size) == 1) {
        const unsigned char *cursor = data;
        PKCS8_PRIV_KEY_INFO *info = NULL;
        if (strcmp(name, PEM_STRING_PKCS8INF) == 0) {
            info = d2i_PKCS8_PRIV_KEY_INFO(NULL, &cursor, size);
        } else if (strcmp(name, PEM_STRING_PKCS8) == 0 && passphrase_length > 0) {
            X509_SIG *sealed = d2i_X509_SIG(NULL, &cursor, size);
            if (sealed != NULL) info = PKCS8_decrypt(sealed, passphrase, (int)passphrase_length);
            X509_SIG_free(sealed);
        }
        const ASN1_OBJECT *algorithm = NULL;
        if (info != NULL && PKCS8_pkey_get0(&algorithm, NULL, NULL, NULL, info) == 1) nid = OBJ_obj2nid(algorithm);
        PKCS8_PRIV_KEY_INFO_free(info);
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
        name = header = NULL;
        data = NULL;
    }
    BIO_free(bio);
    ERR_clear_error();
    return nid;
}

/* Whether an RSA private key's parts agree: n = p*q, d*e = 1 modulo p-1 and q-1, and the CRT values dP = d mod p-1,
 * dQ = d mod q-1, qInv*q = 1 mod p. A PEM file damaged inside its base64 usually still parses (every number is just
 * a different number), and such a key would then fail every request. EVP_PKEY_pairwise_check also tests p and q for
 * primality (about 36 ms, too slow for plain CGI, which loads the key per request); these products take microseconds.
 * 1 when they agree, 0 when not, -1 when the key has no CRT parts to check (only n, e, d) or memory ran out. */
static inline int cflows_rsa_parts_agree(const EVP_PKEY *pkey) {
    static const char *const names[] = {"n", "e", "d", "rsa-factor1", "rsa-factor2", "rsa-exponent1", "rsa-exponent2",
                                        "rsa-coefficient1"};
    BIGNUM *v[8] = {NULL};
    int result = -1;
    for (int i = 0; i < 8; i++)
        if (!EVP_PKEY_get_bn_param(pkey, names[i], &v[i])) goto done;
    BN_CTX *ctx = BN_CTX_new();
    if (ctx == NULL) goto done;
    BN_CTX_start(ctx);
    BIGNUM *t = BN_CTX_get(ctx), *p1 = BN_CTX_get(ctx), *q1 = BN_CTX_get(ctx);
    const BIGNUM *n = v[0], *e = v[1], *d = v[2], *p = v[3], *q = v[4], *dp = v[5], *dq = v[6], *qinv = v[7];
    if (q1 == NULL || !BN_sub(p1, p, BN_value_one()) || !BN_sub(q1, q, BN_value_one())) goto free_ctx;
    result = 0;
    if (BN_is_zero(p1) || BN_is_zero(q1) || BN_is_negative(p1) || BN_is_negative(q1) || BN_is_zero(p)) goto free_ctx;
    /* n = p*q */
    if (!BN_mul(t, p, q, ctx) || BN_cmp(t, n) != 0) goto free_ctx;
    /* d*e = 1 (mod p-1) and (mod q-1) */
    if (!BN_mod_mul(t, d, e, p1, ctx) || !BN_is_one(t)) goto free_ctx;
    if (!BN_mod_mul(t, d, e, q1, ctx) || !BN_is_one(t)) goto free_ctx;
    /* dP = d mod (p-1), dQ = d mod (q-1) */
    if (!BN_nnmod(t, d, p1, ctx) || BN_cmp(t, dp) != 0) goto free_ctx;
    if (!BN_nnmod(t, d, q1, ctx) || BN_cmp(t, dq) != 0) goto free_ctx;
    /* qInv*q = 1 (mod p) */
    if (!BN_mod_mul(t, qinv, q, p, ctx) || !BN_is_one(t)) goto free_ctx;
    result = 1;
free_ctx:
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
done:
    for (int i = 0; i < 8; i++) BN_clear_free(v[i]);
    ERR_clear_error();
    return result;
}
#endif

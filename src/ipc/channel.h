/* Blocking MessageChannel over a file descriptor (spawn and admin paths). Uses the codec in
 * src/proto/msgchan.h. Never reads ahead: every read takes exactly the bytes of one message, so
 * a passed fd that follows a message is not swallowed. Every read and write has a timeout;
 * EINTR is retried. Any fd that arrives where none is expected is closed. */
#ifndef FY_IPC_CHANNEL_H
#define FY_IPC_CHANNEL_H

#include <stddef.h>

#include "proto/msgchan.h"

typedef struct fy_channel {
    int fd;          /* borrowed */
    int timeout_ms;  /* per call; -1 waits forever (only where a hang is impossible) */
} fy_channel_t;

void fy_channel_init(fy_channel_t *ch, int fd, int timeout_ms);

/* Writes one array message. Returns 0, -EINVAL/-EMSGSIZE (see fy_array_encode), -ETIMEDOUT,
 * -EPIPE when the peer closed, or another negative errno. */
int fy_channel_write_array(fy_channel_t *ch, const char *const *items, const size_t *lens,
                           size_t count);
/* Same for NUL-terminated strings, <count> of them after <count>. */
int fy_channel_write_strings(fy_channel_t *ch, size_t count, ...);

/* Reads one array message. Returns 1 and fills <msg>, 0 on EOF at a message boundary (end of
 * channel), -EPROTO on EOF inside a message or a malformed payload, -ETIMEDOUT, or another
 * negative errno. */
int fy_channel_read_array(fy_channel_t *ch, fy_array_t *msg);

int fy_channel_write_scalar(fy_channel_t *ch, const void *data, size_t len);
/* Reads one scalar message of at most <max_len> bytes into a new heap buffer (*data,
 * NUL-terminated, freed by the caller). Returns 1, 0 on EOF at a boundary, -EMSGSIZE past
 * <max_len> (nothing allocated), -EPROTO on truncation, -ETIMEDOUT. */
int fy_channel_read_scalar(fy_channel_t *ch, char **data, size_t *len, size_t max_len);

/* Sends <fd> (borrowed) with one byte of payload in SCM_RIGHTS. Returns 0 or a negative errno. */
int fy_channel_send_fd(fy_channel_t *ch, int fd);
/* Receives one fd (CLOEXEC set). Returns 1 and sets *fd (caller owns it), 0 on EOF, -EPROTO when
 * the byte arrived without exactly one fd (extra fds closed), -ETIMEDOUT. */
int fy_channel_recv_fd(fy_channel_t *ch, int *fd);

#endif

/* The bench's FastCGI app for nginx (libfcgi's FCGX API): the same three routes as
 * bench/apps/{wsgi,rack,c}. Started by spawn-fcgi -F 2 (two processes on one Unix socket).
 *   GET /hello  -> 200 text/plain, 12 bytes "hello world\n"
 *   GET /1m     -> 200 application/octet-stream, 1 MiB (byte i is i % 251)
 *   POST /echo  -> 200 application/octet-stream, the request body (at most 16 MiB)
 *   GET /20m    -> 200 application/octet-stream, 20 MiB (the 1 MiB pattern 20 times; the
 *                  slow-reader run of the session-protocol rows)
 *   anything else -> 404 */
#include <fcgiapp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB_LEN (1u << 20)
#define ECHO_MAX (16u << 20)

static char mib[MIB_LEN];

static void answer_echo(FCGX_Request *req)
{
    const char *cl = FCGX_GetParam("CONTENT_LENGTH", req->envp);
    unsigned long want = cl ? strtoul(cl, NULL, 10) : 0;
    if (want > ECHO_MAX) {
        FCGX_FPrintF(req->out, "Status: 413 Payload Too Large\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 9\r\n\r\ntoo large");
        return;
    }
    char *body = malloc(want ? want : 1);
    if (!body) {
        FCGX_FPrintF(req->out, "Status: 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    unsigned long got = 0;
    while (got < want) {
        int n = FCGX_GetStr(body + got, (int)(want - got), req->in);
        if (n <= 0)
            break;
        got += (unsigned long)n;
    }
    FCGX_FPrintF(req->out, "Status: 200 OK\r\nContent-Type: application/octet-stream\r\n"
                           "Content-Length: %lu\r\n\r\n", got);
    FCGX_PutStr(body, (int)got, req->out);
    free(body);
}

int main(void)
{
    for (unsigned i = 0; i < MIB_LEN; i++)
        mib[i] = (char)(i % 251);
    if (FCGX_Init() != 0)
        return 1;
    FCGX_Request req;
    if (FCGX_InitRequest(&req, 0, 0) != 0)
        return 1;
    while (FCGX_Accept_r(&req) >= 0) {
        const char *uri = FCGX_GetParam("DOCUMENT_URI", req.envp);
        const char *method = FCGX_GetParam("REQUEST_METHOD", req.envp);
        if (!uri)
            uri = "";
        if (!method)
            method = "GET";
        if (strcmp(uri, "/hello") == 0) {
            FCGX_PutS("Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n"
                      "hello world\n", req.out);
        } else if (strcmp(uri, "/1m") == 0) {
            FCGX_FPrintF(req.out, "Status: 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                  "Content-Length: %u\r\n\r\n", MIB_LEN);
            FCGX_PutStr(mib, MIB_LEN, req.out);
        } else if (strcmp(uri, "/20m") == 0) {
            FCGX_FPrintF(req.out, "Status: 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                  "Content-Length: %u\r\n\r\n", 20u * MIB_LEN);
            for (int i = 0; i < 20; i++)
                if (FCGX_PutStr(mib, MIB_LEN, req.out) < 0)
                    break;
        } else if (strcmp(uri, "/echo") == 0 && strcmp(method, "POST") == 0) {
            answer_echo(&req);
        } else {
            FCGX_PutS("Status: 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n"
                      "\r\nnot found\n", req.out);
        }
        FCGX_Finish_r(&req);
    }
    return 0;
}

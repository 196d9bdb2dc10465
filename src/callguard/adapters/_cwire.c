/*
 * callguard.adapters._cwire: optional C loops for the AMI and ESL wire parsers.
 *
 * Why C: with every header wanted, pure Python spends its time creating the
 * strings and the dict of each message (an ESL event has ~100 headers, ~200
 * strings), not in logic.  These functions do exactly what the pure-Python
 * paths in adapters/asterisk/wire.py and adapters/freeswitch/wire.py do, in
 * one pass over the bytes; those modules fall back to Python when this
 * extension is missing (no compiler at install time) or when
 * CALLGUARD_NO_EXTENSIONS is set, and the property tests run both against
 * the plain reference readers (tests/adapters/{asterisk,freeswitch}/
 * *_reference.py).
 *
 * Text: fields are cut out of the raw bytes at ASCII delimiters and each is
 * decoded as UTF-8 with errors="replace".  The UTF-8 decoder never lets an
 * invalid sequence swallow an ASCII byte, so this equals decoding the whole
 * block first and cutting the text (what the Python paths do).
 *
 * Safety: every scan is bounded by the end of the caller's buffer (memchr
 * with explicit lengths, index checks before every look-ahead); nothing is
 * written outside buffers this file allocates; hostile input costs O(bytes).
 * tests/adapters/test_cwire.py feeds random bytes in random reads to both
 * implementations and compares them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

static PyObject *empty_tuple;   /* for tp_new */
static PyObject *str_newline;   /* "\n" */
static PyObject *str_body;      /* "body" */
static PyObject *str_event;     /* "Event" */
static PyObject *str_response;  /* "Response" */

static PyObject *
utf8(const char *s, Py_ssize_t n)
{
    return PyUnicode_DecodeUTF8(s, n, "replace");
}

/*
 * Header names, cached.  Asterisk and FreeSWITCH write names from a fixed
 * vocabulary (manager.c's event fields; switch_event.c's core headers and
 * the channel variables a dialplan sets), so the same few hundred recur in
 * every message of a live PBX, while values (ids, times, numbers) seldom
 * do: names are cached, values never.  A cached name also carries its hash,
 * so the dict insert does not hash it again.  Bounded: at most
 * NAME_CACHE_MAX ASCII names of at most NAME_MAX_LEN bytes; beyond that (a
 * peer inventing names) a name is decoded uncached, as without the cache.
 */
#define NAME_SLOTS 2048           /* a power of two */
#define NAME_CACHE_MAX 1024
#define NAME_MAX_LEN 64
#define NAME_PROBES 8
static PyObject *name_slots[NAME_SLOTS];
static Py_ssize_t names_cached;

static PyObject *
name_str(const char *s, Py_ssize_t n)
{
    if (n > NAME_MAX_LEN)
        return utf8(s, n);
    /* Hash the length and the first and last 8 bytes only (names share long
       prefixes such as "variable_sip_"; their ends differ): a byte-by-byte hash
       cost more than the whole dict insert.  Collisions only cost probes. */
    uint64_t head = 0, tail = 0;
    size_t k = n < 8 ? (size_t)n : 8;
    memcpy(&head, s, k);
    memcpy(&tail, s + n - (Py_ssize_t)k, k);
    uint64_t mixed = (head * 0x9E3779B97F4A7C15ull) ^ ((tail + (uint64_t)n) * 0xC2B2AE3D27D4EB4Full);
    uint32_t h = (uint32_t)(mixed ^ (mixed >> 29) ^ (mixed >> 47));
    for (uint32_t probe = 0; probe < NAME_PROBES; probe++) {
        PyObject **slot = &name_slots[(h + probe) & (NAME_SLOTS - 1)];
        PyObject *cached = *slot;
        if (cached == NULL) {
            PyObject *str = utf8(s, n);
            if (str != NULL && names_cached < NAME_CACHE_MAX && PyUnicode_IS_ASCII(str)) {
                Py_INCREF(str);
                *slot = str;
                names_cached++;
            }
            return str;
        }
        /* Only ASCII strings are cached, whose data are exactly their bytes. */
        if (PyUnicode_GET_LENGTH(cached) == n && memcmp(PyUnicode_DATA(cached), s, (size_t)n) == 0) {
            Py_INCREF(cached);
            return cached;
        }
    }
    return utf8(s, n);
}

static int
starts_with(const char *p, const char *end, const char *prefix, Py_ssize_t n)
{
    return end - p >= n && memcmp(p, prefix, (size_t)n) == 0;
}

/* First "\r\n" in [p, end), or NULL (leftmost, as str.split finds it). */
static const char *
find_crlf(const char *p, const char *end)
{
    while (p < end) {
        const char *r = memchr(p, '\r', (size_t)(end - p));
        if (r == NULL || r + 1 >= end)
            return NULL;
        if (r[1] == '\n')
            return r;
        p = r + 1;
    }
    return NULL;
}

/* First "\r\n\r\n" in [p, end), or NULL.  A CRLF not followed by another
   cannot overlap the next candidate (its second byte is LF, not CR). */
static const char *
find_eom(const char *p, const char *end)
{
    while ((p = find_crlf(p, end)) != NULL) {
        if (end - p >= 4 && p[2] == '\r' && p[3] == '\n')
            return p;
        p += 2;
    }
    return NULL;
}

/* First occurrence of the two bytes a, b in [p, end), or NULL. */
static const char *
find_pair(const char *p, const char *end, char a, char b)
{
    while (p < end) {
        const char *c = memchr(p, a, (size_t)(end - p));
        if (c == NULL || c + 1 >= end)
            return NULL;
        if (c[1] == b)
            return c;
        p = c + 1;
    }
    return NULL;
}

/* Does [p, end) contain the needle (n >= 1 bytes)? */
static int
contains(const char *p, const char *end, const char *needle, Py_ssize_t n)
{
    while (end - p >= n) {
        const char *c = memchr(p, needle[0], (size_t)(end - p - n + 1));
        if (c == NULL)
            return 0;
        if (memcmp(c, needle, (size_t)n) == 0)
            return 1;
        p = c + 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- AMI --- */

/* Store name -> value in msg; a repeated name's values are joined with "\n"
   (what AmiMessage documents for Output: lines and the like). */
static int
ami_add(PyObject *msg, const char *name, Py_ssize_t name_len, const char *value, Py_ssize_t value_len)
{
    PyObject *key = name_str(name, name_len);
    if (key == NULL)
        return -1;
    PyObject *val = utf8(value, value_len);
    Py_ssize_t size = PyDict_GET_SIZE(msg);
    PyObject *old = val ? PyDict_SetDefault(msg, key, val) : NULL;  /* borrowed */
    int rc = old ? 0 : -1;
    /* A repeated header, told by the size (not by identity: CPython shares one
       object for "" and for each one-character string). */
    if (old != NULL && PyDict_GET_SIZE(msg) == size) {
        PyObject *with_nl = PyUnicode_Concat(old, str_newline);
        PyObject *joined = with_nl ? PyUnicode_Concat(with_nl, val) : NULL;
        rc = joined ? PyDict_SetItem(msg, key, joined) : -1;
        Py_XDECREF(with_nl);
        Py_XDECREF(joined);
    }
    Py_DECREF(key);
    Py_XDECREF(val);
    return rc;
}

/*
 * One message [s, end) (its lines, without the empty line that ends it) as
 * an instance of cls, by manager.c's grammar: astman_append/manager_event
 * write every header as "%s: %s\r\n", so a line is a header when it holds
 * ": " (the name is what precedes the FIRST ": ", so
 * "ChanVariable(IAX2/10.0.0.1:4569-1): x" keeps its colon and a UserEvent
 * name may hold a space) or ends in ":" (empty value); an empty name, or
 * any other line, is body text (msg.body, lines joined with "\n").
 * "Response: Follows" (action_command up to Asterisk 13) is handed to the
 * Python parser, follows(text): it is rare and its body rule differs.
 */
static PyObject *
ami_build(const char *s, const char *end, PyTypeObject *cls, PyObject *follows)
{
    const char *first = find_crlf(s, end);
    if ((first ? first : end) - s == 17 && memcmp(s, "Response: Follows", 17) == 0) {
        PyObject *text = utf8(s, end - s);
        if (text == NULL)
            return NULL;
        PyObject *msg = PyObject_CallOneArg(follows, text);
        Py_DECREF(text);
        return msg;
    }
    PyObject *msg = cls->tp_new(cls, empty_tuple, NULL);
    if (msg == NULL)
        return NULL;
    PyObject *body = NULL;
    const char *line = s;
    for (;;) {
        const char *eol = find_crlf(line, end);
        if (eol == NULL)
            eol = end;
        const char *sep = find_pair(line, eol, ':', ' ');
        const char *name_end = NULL, *value = eol;
        if (sep != NULL) {
            name_end = sep;
            value = sep + 2;
        }
        else if (eol > line && eol[-1] == ':') {
            name_end = eol - 1;
        }
        if (name_end != NULL && name_end > line) {
            if (ami_add(msg, line, name_end - line, value, eol - value) < 0)
                goto error;
        }
        else {
            if (body == NULL && (body = PyList_New(0)) == NULL)
                goto error;
            PyObject *text = utf8(line, eol - line);
            if (text == NULL || PyList_Append(body, text) < 0) {
                Py_XDECREF(text);
                goto error;
            }
            Py_DECREF(text);
        }
        if (eol == end)
            break;
        line = eol + 2;
    }
    if (body != NULL) {
        PyObject *joined = PyUnicode_Join(str_newline, body);
        if (joined == NULL || PyObject_SetAttr(msg, str_body, joined) < 0) {
            Py_XDECREF(joined);
            goto error;
        }
        Py_DECREF(joined);
        Py_DECREF(body);
    }
    return msg;
error:
    Py_XDECREF(body);
    Py_DECREF(msg);
    return NULL;
}

/*
 * AmiFramer: AmiParser's framing (adapters/asterisk/wire.py, class _Framer is
 * the same in Python): bytes in, complete messages out, partial messages
 * (even a partial UTF-8 sequence) kept for the next read.  The protocol
 * calls feed() once per read, so on small reads the cost of a call that
 * completes nothing matters: here it is one append and one bounded search.
 */
typedef struct {
    PyObject_HEAD
    char *buf;                 /* received bytes not yet framed */
    Py_ssize_t len, cap;
    Py_ssize_t scan;           /* where the search for the next end of message resumes */
    Py_ssize_t max;            /* bytes per message, and per run of blocks that are not messages */
    Py_ssize_t run;            /* characters of consecutive blocks that were not messages */
    Py_ssize_t parsed, skipped, garbage;
    int expect_banner;
    int busy;                  /* inside feed(): the callbacks it makes must not feed again */
    PyObject *banner;          /* str, or None until the banner line came */
    PyObject *decisions;       /* event name -> keep?  (AmiParser's dict, shared) */
    PyObject *decide;          /* decide(name) -> bool, caching it in decisions */
    PyObject *follows;         /* the Python parser, for "Response: Follows" */
    PyObject *error;           /* AmiProtocolError */
    PyTypeObject *cls;         /* AmiMessage */
} AmiFramer;

static const char BANNER_PREFIX[] = "Asterisk Call Manager/";
#define BANNER_PREFIX_LEN ((Py_ssize_t)(sizeof BANNER_PREFIX - 1))

/* Drop the first n buffered bytes. */
static void
framer_consume(AmiFramer *self, Py_ssize_t n)
{
    memmove(self->buf, self->buf + n, (size_t)(self->len - n));
    self->len -= n;
}

/* The last "\r\n\r\n" in [from, end) (there is one at from), as bytes.rfind. */
static const char *
rfind_eom(const char *from, const char *end)
{
    for (const char *p = end - 4; p > from; p--)
        if (p[0] == '\r' && p[1] == '\n' && p[2] == '\r' && p[3] == '\n')
            return p;
    return from;
}

/*
 * The messages of [p, end), which ends with "\r\n\r\n", appended to out.
 * Pieces between empty lines that start "Event: " are filtered by name:
 * decisions[name], else decide(name); an unwanted event is skipped unparsed
 * unless it carries "ActionID: " (an answer to one of our actions).  One
 * empty line before a message is dropped; a block with neither Event nor
 * Response is counted as garbage, and the batch stops as soon as the run of
 * such blocks exceeds max (the caller raises).  0, or -1 with an exception.
 */
static int
framer_batch(AmiFramer *self, const char *p, const char *end, PyObject *out)
{
    const char *stop;
    while ((stop = find_eom(p, end)) != NULL) {
        const char *q = p;
        p = stop + 4;
        PyObject *msg;
        if (!starts_with(q, stop, "Event: ", 7) && !starts_with(q, stop, "Response: ", 10)) {
            if (starts_with(q, stop, "\r\n", 2))
                q += 2;  /* an odd empty line before the message */
            if (q == stop)
                continue;  /* nothing at all */
        }
        if (starts_with(q, stop, "Event: ", 7)) {
            self->run = 0;
            const char *eol = find_crlf(q, stop);
            PyObject *name = name_str(q + 7, (eol ? eol : stop) - (q + 7));
            if (name == NULL)
                return -1;
            PyObject *keep = PyDict_GetItemWithError(self->decisions, name);  /* borrowed */
            int wanted;
            if (keep != NULL) {
                wanted = PyObject_IsTrue(keep);
            }
            else if (PyErr_Occurred()) {
                wanted = -1;
            }
            else {
                PyObject *answer = PyObject_CallOneArg(self->decide, name);
                wanted = answer ? PyObject_IsTrue(answer) : -1;
                Py_XDECREF(answer);
            }
            Py_DECREF(name);
            if (wanted < 0)
                return -1;
            if (!wanted && !contains(q, stop, "\r\nActionID: ", 12)) {
                self->skipped++;
                continue;
            }
            msg = ami_build(q, stop, self->cls, self->follows);
        }
        else {
            msg = ami_build(q, stop, self->cls, self->follows);
            if (msg == NULL)
                return -1;
            int named = starts_with(q, stop, "Response: ", 10) || PyDict_Contains(msg, str_event) > 0
                        || PyDict_Contains(msg, str_response) > 0;
            if (!named) {  /* not a message: a caller's CR/LF cut an event, or not AMI at all */
                Py_DECREF(msg);
                PyObject *text = utf8(q, stop - q);  /* counted in characters, as the Python twin does */
                if (text == NULL)
                    return -1;
                self->garbage++;
                self->run += PyUnicode_GET_LENGTH(text) + 4;
                Py_DECREF(text);
                if (self->run > self->max)
                    return 0;
                continue;
            }
            self->run = 0;
        }
        if (msg == NULL)
            return -1;
        int rc = PyList_Append(out, msg);
        Py_DECREF(msg);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Consume the banner line; 0 while it is incomplete, 1 when done, -1 on error. */
static int
framer_banner(AmiFramer *self)
{
    Py_ssize_t n = self->len < BANNER_PREFIX_LEN ? self->len : BANNER_PREFIX_LEN;
    int prefix = memcmp(self->buf, BANNER_PREFIX, (size_t)n) == 0;
    if (self->len < BANNER_PREFIX_LEN && prefix)
        return 0;
    self->expect_banner = 0;
    if (!prefix)
        return 1;  /* a stream that starts mid-session */
    const char *eol = find_crlf(self->buf, self->buf + self->len);
    if (eol == NULL) {
        if (self->len > 1024) {
            PyErr_SetString(self->error, "banner line longer than 1 KiB: this peer is not an Asterisk manager");
            return -1;
        }
        self->expect_banner = 1;
        return 0;
    }
    PyObject *banner = utf8(self->buf, eol - self->buf);
    if (banner == NULL)
        return -1;
    Py_SETREF(self->banner, banner);
    framer_consume(self, eol + 2 - self->buf);
    return 1;
}

static int
framer_unterminated(AmiFramer *self)
{
    if (self->len <= self->max)
        return 0;
    PyErr_Format(self->error, "%zd bytes without the empty line that ends an AMI message (limit %zd): "
                 "this peer is not speaking AMI", self->len, self->max);
    return -1;
}

static PyObject *
framer_feed_unlocked(AmiFramer *self, PyObject *data)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (self->buf == NULL || view.len > self->cap - self->len) {
        Py_ssize_t cap = self->cap ? self->cap : 4096;
        while (cap - self->len < view.len) {
            if (cap > PY_SSIZE_T_MAX / 2) {
                PyBuffer_Release(&view);
                return PyErr_NoMemory();
            }
            cap *= 2;
        }
        char *grown = PyMem_Realloc(self->buf, (size_t)cap);
        if (grown == NULL) {
            PyBuffer_Release(&view);
            return PyErr_NoMemory();
        }
        self->buf = grown;
        self->cap = cap;
    }
    memcpy(self->buf + self->len, view.buf, (size_t)view.len);
    self->len += view.len;
    PyBuffer_Release(&view);
    if (self->expect_banner) {
        int done = framer_banner(self);
        if (done <= 0)
            return done < 0 ? NULL : PyList_New(0);
    }
    const char *buf = self->buf, *end = buf + self->len;
    const char *first = find_eom(buf + self->scan, end);
    if (first == NULL) {
        if (framer_unterminated(self) < 0)
            return NULL;
        /* A terminator split across reads starts at most 3 bytes back. */
        self->scan = self->len > 3 ? self->len - 3 : 0;
        return PyList_New(0);
    }
    /* Every complete message at once. */
    const char *cut = rfind_eom(first, end) + 4;
    const char *stop;
    for (const char *start = buf; cut - buf > self->max && (stop = find_eom(start, cut)) != NULL;) {
        if (stop - start > self->max) {
            PyErr_Format(self->error, "an AMI message of %zd bytes (limit %zd): this peer is not speaking AMI",
                         (Py_ssize_t)(stop - start), self->max);
            return NULL;
        }
        start = stop + 4;
    }
    PyObject *out = PyList_New(0);
    Py_ssize_t skipped = self->skipped;
    int rc = out ? framer_batch(self, buf, cut, out) : -1;
    framer_consume(self, cut - buf);
    self->scan = self->len > 3 ? self->len - 3 : 0;
    if (rc == 0 && self->run > self->max) {
        PyErr_Format(self->error, "%zd bytes of blocks with neither Event: nor Response: in a row: "
                     "this peer is not speaking AMI", self->run);
        rc = -1;
    }
    if (rc == 0)
        rc = framer_unterminated(self);
    if (rc < 0) {
        self->skipped = skipped;
        Py_XDECREF(out);
        return NULL;
    }
    self->parsed += PyList_GET_SIZE(out);
    return out;
}

/* feed() calls Python (the name filter, the Follows parser) while it holds
   pointers into its buffer: a feed() from inside would move that buffer. */
static PyObject *
framer_feed(AmiFramer *self, PyObject *data)
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "AmiFramer.feed() called again from inside feed()");
        return NULL;
    }
    self->busy = 1;
    PyObject *out = framer_feed_unlocked(self, data);
    self->busy = 0;
    return out;
}

static PyObject *
framer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"decide", "decisions", "expect_banner", "max_message", "follows", "cls", "error", NULL};
    PyObject *decide, *decisions, *follows, *error;
    PyTypeObject *cls;
    int expect_banner;
    Py_ssize_t max;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!pnOO!O:AmiFramer", names, &decide, &PyDict_Type,
                                     &decisions, &expect_banner, &max, &follows, &PyType_Type, &cls, &error))
        return NULL;
    if (!PyType_IsSubtype(cls, &PyDict_Type)) {
        PyErr_SetString(PyExc_TypeError, "AmiFramer: cls must be a dict subclass");
        return NULL;
    }
    AmiFramer *self = (AmiFramer *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->expect_banner = expect_banner;
    self->max = max;
    self->banner = Py_NewRef(Py_None);
    self->decide = Py_NewRef(decide);
    self->decisions = Py_NewRef(decisions);
    self->follows = Py_NewRef(follows);
    self->error = Py_NewRef(error);
    self->cls = (PyTypeObject *)Py_NewRef((PyObject *)cls);
    return (PyObject *)self;
}

static int
framer_traverse(AmiFramer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->banner);
    Py_VISIT(self->decide);
    Py_VISIT(self->decisions);
    Py_VISIT(self->follows);
    Py_VISIT(self->error);
    Py_VISIT(self->cls);
    return 0;
}

static int
framer_clear(AmiFramer *self)
{
    Py_CLEAR(self->banner);
    Py_CLEAR(self->decide);
    Py_CLEAR(self->decisions);
    Py_CLEAR(self->follows);
    Py_CLEAR(self->error);
    Py_CLEAR(self->cls);
    return 0;
}

static void
framer_dealloc(AmiFramer *self)
{
    PyObject_GC_UnTrack(self);
    framer_clear(self);
    PyMem_Free(self->buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
framer_get_banner(AmiFramer *self, void *closure)
{
    return Py_NewRef(self->banner);
}

static PyObject *
framer_get_pending(AmiFramer *self, void *closure)
{
    return PyLong_FromSsize_t(self->len);
}

static PyMethodDef framer_methods[] = {
    {"feed", (PyCFunction)framer_feed, METH_O, "The messages completed by these bytes (see AmiParser.feed)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef framer_members[] = {
    {"parsed", T_PYSSIZET, offsetof(AmiFramer, parsed), READONLY, "messages returned"},
    {"skipped", T_PYSSIZET, offsetof(AmiFramer, skipped), READONLY, "unwanted events dropped unparsed"},
    {"garbage", T_PYSSIZET, offsetof(AmiFramer, garbage), READONLY, "blocks with neither Event nor Response"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef framer_getset[] = {
    {"banner", (getter)framer_get_banner, NULL, "the banner line, once received", NULL},
    {"pending_bytes", (getter)framer_get_pending, NULL, "bytes buffered towards the next message", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject AmiFramerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "callguard.adapters._cwire.AmiFramer",
    .tp_basicsize = sizeof(AmiFramer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "AMI framing in C: see AmiParser in adapters/asterisk/wire.py.",
    .tp_new = framer_new,
    .tp_dealloc = (destructor)framer_dealloc,
    .tp_traverse = (traverseproc)framer_traverse,
    .tp_clear = (inquiry)framer_clear,
    .tp_methods = framer_methods,
    .tp_members = framer_members,
    .tp_getset = framer_getset,
};

/* ---------------------------------------------------------------- ESL --- */

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* %XX -> byte over [s, s+n) (all ASCII) into out; any other % stays, as in
   urllib.parse.unquote_to_bytes.  Returns the output length (<= n). */
static Py_ssize_t
unquote_ascii(const char *s, Py_ssize_t n, char *out)
{
    Py_ssize_t i = 0, o = 0;
    while (i < n) {
        if (s[i] == '%' && n - i >= 3) {  /* both hex digits inside [s, s+n) */
            int hi = hexval((unsigned char)s[i + 1]), lo = hexval((unsigned char)s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out[o++] = (char)(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out[o++] = s[i++];
    }
    return o;
}

/* The URL-decoded value of raw bytes [s, s+n): exactly
   urllib.parse.unquote(raw.decode("utf-8", "replace"), errors="replace"),
   which libesl's esl_url_decode matches on FreeSWITCH's own output
   (switch_url_encode writes %XX for every byte it escapes).  unquote
   decodes each maximal ASCII run's %XX bytes as UTF-8 and keeps non-ASCII
   text as it is, so do the same run by run. */
static PyObject *
url_decode(const char *s, Py_ssize_t n)
{
    if (memchr(s, '%', (size_t)n) == NULL)
        return utf8(s, n);
    char small[512];
    char *tmp = n <= (Py_ssize_t)sizeof small ? small : PyMem_Malloc((size_t)n);
    if (tmp == NULL)
        return PyErr_NoMemory();
    PyObject *result = NULL;
    Py_ssize_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80)
        i++;
    if (i == n) {  /* all ASCII: the usual FreeSWITCH value */
        result = utf8(tmp, unquote_ascii(s, n, tmp));
    }
    else {
        PyObject *parts = PyList_New(0);
        i = 0;
        while (parts != NULL && i < n) {
            Py_ssize_t j = i;
            int ascii = (unsigned char)s[i] < 0x80;
            while (j < n && ((unsigned char)s[j] < 0x80) == ascii)
                j++;
            PyObject *part = ascii ? utf8(tmp, unquote_ascii(s + i, j - i, tmp)) : utf8(s + i, j - i);
            if (part == NULL || PyList_Append(parts, part) < 0)
                Py_CLEAR(parts);
            Py_XDECREF(part);
            i = j;
        }
        if (parts != NULL) {
            PyObject *empty = PyUnicode_New(0, 0);
            result = empty ? PyUnicode_Join(empty, parts) : NULL;
            Py_XDECREF(empty);
            Py_DECREF(parts);
        }
    }
    if (tmp != small)
        PyMem_Free(tmp);
    return result;
}

/*
 * esl_headers(block, decode) -> dict
 *
 * One ESL header block (lines ended by LF, without the empty line) by the
 * grammar of adapters/freeswitch/wire.py: libesl's esl_recv_event ends a
 * header's name at the FIRST ':' and skips one space after it (what
 * switch_event_serialize writes: "%s: %s\n"); a line without a colon, or
 * with an empty name, is no header; when a name repeats the first one wins
 * (esl_event_get_header returns the first).  decode=True URL-decodes the
 * values (esl_recv_event decodes every value); names are never decoded.
 */
static PyObject *
esl_headers(PyObject *module, PyObject *args)
{
    Py_buffer view;
    int decode;
    if (!PyArg_ParseTuple(args, "y*p", &view, &decode))
        return NULL;
    PyObject *out = PyDict_New();
    const char *line = view.buf, *end = (const char *)view.buf + view.len;
    while (out != NULL) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon != NULL && colon > line) {
            const char *value = colon + 1;
            if (value < eol && *value == ' ')
                value++;
            PyObject *name = name_str(line, colon - line);
            PyObject *text = name == NULL ? NULL : decode ? url_decode(value, eol - value) : utf8(value, eol - value);
            /* setdefault: a repeated name keeps its first value */
            if (text == NULL || PyDict_SetDefault(out, name, text) == NULL)
                Py_CLEAR(out);
            Py_XDECREF(name);
            Py_XDECREF(text);
        }
        if (eol == end)
            break;
        line = eol + 1;
    }
    PyBuffer_Release(&view);
    return out;
}

/*
 * find_blank(data, start, stop) -> int
 *
 * The index of the first "\n\n" in data[start:stop], or -1: where an ESL
 * header block ends.  bytes.find crawls with this two-byte needle through
 * text that has an LF every few dozen bytes; memchr for the LFs does not.
 */
static PyObject *
find_blank(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, stop;
    if (!PyArg_ParseTuple(args, "y*nn", &view, &start, &stop))
        return NULL;
    if (stop > view.len)
        stop = view.len;
    if (start < 0)
        start = 0;
    Py_ssize_t found = -1;
    if (start < stop) {
        const char *base = view.buf;
        const char *hit = find_pair(base + start, base + stop, '\n', '\n');
        if (hit != NULL)
            found = hit - base;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(found);
}

static PyMethodDef methods[] = {
    {"esl_headers", esl_headers, METH_VARARGS, "One ESL header block as a dict (values URL-decoded if asked)."},
    {"find_blank", find_blank, METH_VARARGS, "Index of the first blank line (\\n\\n) in data[start:stop], or -1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "callguard.adapters._cwire",
    "Optional C loops for callguard's AMI and ESL parsers (pure-Python fallbacks in the wire modules).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__cwire(void)
{
    empty_tuple = PyTuple_New(0);
    str_newline = PyUnicode_InternFromString("\n");
    str_body = PyUnicode_InternFromString("body");
    str_event = PyUnicode_InternFromString("Event");
    str_response = PyUnicode_InternFromString("Response");
    if (!empty_tuple || !str_newline || !str_body || !str_event || !str_response)
        return NULL;
    if (PyType_Ready(&AmiFramerType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "AmiFramer", (PyObject *)&AmiFramerType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

/*
 * tantra._fanout: one hub batch to every sink of a group, the per-client loop in C.
 *
 * Why: broadcasting one reading to 1000 dashboards costs one send() per
 * client; the Python work around each send (Hub._deliver -> Outbox.deliver ->
 * write-through checks -> socket.send) cost as much again as the kernel's part
 * (issue 14 item 3, docs/performance.md). This runs that loop in C and leaves
 * every decision that is not "send these bytes now" to Python.
 *
 * deliver(fast_type, slow, hand_back, sinks, batch) -> failed
 *
 * For each sink, in order:
 *   - an instance of exactly ``fast_type`` (tantra.outbox.Outbox) whose
 *     ``_direct`` is true and whose ``_line`` is a plain TCP transport,
 *     connected and holding nothing (``dataBuffer``, ``_tempDataLen``,
 *     ``_writeDisconnected`` all false): the batch's bytes for the sink's
 *     ``_encode`` (``batch.encoded(encode)``, asked once per encoder per call)
 *     are sent with one send(MSG_DONTWAIT | MSG_NOSIGNAL) on the sink's
 *     ``_fd`` (the transport's, noted once); unless all of it went,
 *     ``hand_back(sink, data, result)`` is called with the bytes sent or
 *     -errno and returns how many sinks failed (0 or 1);
 *   - any other sink: ``slow(sink, batch)`` (Outbox.deliver and the rest, in
 *     Python), which returns 0 or 1 the same way.
 * Returns the number of sinks that failed. An exception that escapes ``slow``
 * or ``hand_back`` (they catch Exception) stops the loop and propagates, as
 * it would from the Python loop.
 *
 * The GIL is held throughout: the sends are non-blocking, and holding it
 * keeps the order of everything the loop does the same as the Python loop's.
 *
 * Memory, not instructions, is what this loop waits on: each send runs the
 * kernel's TCP path for both ends of the connection, which pushes the next
 * sink's outbox and transport out of the CPU's caches, so without help every
 * client costs several cache misses before its send can start (perf annotate:
 * most of the loop's own time on the first read of the sink, of its
 * ``_line``, and of the transport's attributes). The loop therefore asks for
 * the memory of the sinks a few places ahead (see ``prefetch_ahead``) while
 * the current send runs. These are hints only: nothing is decided ahead, and
 * every check is made on the sink's own turn.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

static PyObject *s_direct, *s_line, *s_fd, *s_encode, *s_encoded, *s_connected, *s_dataBuffer,
    *s_tempDataLen, *s_writeDisconnected;

/* Whether the attribute is true (1) or false (0); -1 when it is missing or cannot tell. */
static int
truth_of(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        PyErr_Clear();
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    if (truth < 0)
        PyErr_Clear();
    return truth;
}

/*
 * 1 when the transport is connected and holds nothing: its bytes may go now,
 * on the descriptor the outbox noted when it was made. While ``connected``
 * is true Twisted has not closed the socket (its connectionLost clears it
 * first), so that descriptor is still this client's and no other's.
 * ``_tempDataLen`` rather than the ``_tempDataBuffer`` list is Twisted's own
 * test for "nothing appended since the last write" (abstract.FileDescriptor):
 * zero is a shared small int, where the list is one more object per client
 * whose memory the send before had pushed out of the cache.
 */
static int
idle(PyObject *line)
{
    return truth_of(line, s_connected) == 1 && truth_of(line, s_tempDataLen) == 0
           && truth_of(line, s_dataBuffer) == 0 && truth_of(line, s_writeDisconnected) == 0;
}

/*
 * Where an attribute of the fast type lives: a __slots__ member is read at its
 * offset (what its descriptor would do, minus the look-up: this runs once per
 * client per turn); anything else through getattr.
 */
typedef struct {
    PyObject *name;
    Py_ssize_t offset; /* 0: use getattr */
} Field;

static void
find_field(Field *field, PyObject *type, PyObject *name)
{
    field->name = name;
    field->offset = 0;
    PyObject *descr = PyObject_GetAttr(type, name);
    if (descr == NULL) {
        PyErr_Clear();
        return;
    }
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX && !(member->flags & READ_RESTRICTED))
            field->offset = member->offset;
    }
    Py_DECREF(descr);
}

/* A new reference to the attribute, or NULL (no error set) when it is missing or fails. */
static PyObject *
get_field(PyObject *obj, const Field *field)
{
    if (field->offset > 0) {
        PyObject *value = *(PyObject **)((char *)obj + field->offset);
        Py_XINCREF(value);
        return value;
    }
    PyObject *value = PyObject_GetAttr(obj, field->name);
    if (value == NULL)
        PyErr_Clear();
    return value;
}

typedef struct {
    Field direct, line, fd, encode;
} Fields;

/* The sink's transport if its bytes may be sent now, else NULL (no error set). */
static PyObject *
direct_line(PyObject *sink, const Fields *fields)
{
    PyObject *direct = get_field(sink, &fields->direct);
    if (direct == NULL)
        return NULL;
    int is_direct = direct == Py_True;
    Py_DECREF(direct);
    if (!is_direct)
        return NULL;
    PyObject *line = get_field(sink, &fields->line);
    if (line == NULL)
        return NULL;
    if (line == Py_None || !idle(line)) {
        Py_DECREF(line);
        return NULL;
    }
    return line;
}

/* The sink's ``_line`` slot, borrowed, when the sink is of the fast type and the slot holds a transport; else NULL. */
static inline PyObject *
line_slot(PyObject *sink, PyObject *fast_type, const Fields *fields)
{
    if ((PyObject *)Py_TYPE(sink) != fast_type || fields->line.offset <= 0)
        return NULL;
    PyObject *line = *(PyObject **)((char *)sink + fields->line.offset);
    return line == NULL || line == Py_None ? NULL : line;
}

/*
 * The object's managed attribute values array, or NULL: none (its dict was
 * made), or a CPython other than 3.11, the one whose layout this reads (a
 * PyDictValues* four words before the object); elsewhere the loop only
 * prefetches the transport object itself.
 */
static inline char *
values_of(PyObject *obj)
{
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
    if (PyType_HasFeature(Py_TYPE(obj), Py_TPFLAGS_MANAGED_DICT))
        return *(char **)((char *)obj - 4 * sizeof(PyObject *));
#endif
    (void)obj;
    return NULL;
}

/* How many sinks ahead each stage of ``prefetch_ahead`` works (one send is microseconds: one place is enough time, the stages are for the chain of pointers). */
enum { AHEAD_SINK = 3, AHEAD_LINE = 2, AHEAD_VALUES = 1 };

/*
 * The memory the checks of a later sink will read, asked for now:
 *   - AHEAD_SINK places on: the sink object and its fast-path slots;
 *   - AHEAD_LINE places on (the sink's slots are cached by then): its transport
 *     object and the words just before it, where CPython keeps the pointer
 *     to an object's managed attribute values (without reading the type to
 *     know: that read would wait for the very memory being asked for);
 *   - AHEAD_VALUES places on: the values array itself, where ``connected``,
 *     ``dataBuffer``, ``_tempDataLen`` and ``_writeDisconnected`` are,
 *     and the sink's ``_fd`` integer (a separate object for descriptors
 *     above 256).
 * Only loads that are valid whatever the state: slot reads of the fast type
 * (``Py_TYPE`` checked) and the managed-dict pre-header of a type that has one.
 * A prefetch of a stale or odd address is harmless; it never faults.
 *
 * Always inlined: GCC deems a function whose only effects are prefetches
 * pure, and drops the call to it unless its body is already in the loop.
 */
static inline __attribute__((always_inline)) void
prefetch_ahead(PyObject *sinks, Py_ssize_t i, Py_ssize_t n, PyObject *fast_type,
               const Fields *fields)
{
    if (i + AHEAD_SINK < n) {
        char *sink = (char *)PyList_GET_ITEM(sinks, i + AHEAD_SINK);
        __builtin_prefetch(sink);
        __builtin_prefetch(sink + fields->direct.offset);
        __builtin_prefetch(sink + fields->line.offset);
        __builtin_prefetch(sink + fields->fd.offset);
    }
    if (i + AHEAD_LINE < n) {
        PyObject *line = line_slot(PyList_GET_ITEM(sinks, i + AHEAD_LINE), fast_type, fields);
        if (line != NULL) {
            __builtin_prefetch(line);
            __builtin_prefetch((char *)line - 4 * sizeof(PyObject *));
        }
    }
    if (i + AHEAD_VALUES < n) {
        PyObject *sink = PyList_GET_ITEM(sinks, i + AHEAD_VALUES);
        PyObject *line = line_slot(sink, fast_type, fields);
        if (line != NULL) {
            if (fields->fd.offset > 0)
                __builtin_prefetch(*(PyObject **)((char *)sink + fields->fd.offset));
            char *values = values_of(line);
            if (values != NULL) {
                /* The first 32 attributes: Twisted sets those the checks read in __init__. */
                for (int line_at = 0; line_at < 4; line_at++)
                    __builtin_prefetch(values + 64 * line_at);
            }
        }
    }
}

/* slow(sink, batch) or hand_back(sink, data, result): its 0/1, or -1 with an exception set. */
static int
call_counting(PyObject *func, PyObject *const *args, size_t nargs)
{
    PyObject *result = PyObject_Vectorcall(func, args, nargs, NULL);
    if (result == NULL)
        return -1;
    long failed = PyLong_Check(result) ? PyLong_AsLong(result) : 0;
    Py_DECREF(result);
    if (failed == -1 && PyErr_Occurred())
        return -1;
    return failed != 0;
}

static PyObject *
fanout_deliver(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "deliver(fast_type, slow, hand_back, sinks, batch)");
        return NULL;
    }
    PyObject *fast_type = args[0], *slow = args[1], *hand_back = args[2], *sinks = args[3],
             *batch = args[4];
    if (!PyList_Check(sinks)) {
        PyErr_SetString(PyExc_TypeError, "sinks must be a list");
        return NULL;
    }
    if (!PyType_Check(fast_type)) {
        PyErr_SetString(PyExc_TypeError, "fast_type must be a type");
        return NULL;
    }
    Fields fields;
    find_field(&fields.direct, fast_type, s_direct);
    find_field(&fields.line, fast_type, s_line);
    find_field(&fields.fd, fast_type, s_fd);
    find_field(&fields.encode, fast_type, s_encode);
    Py_ssize_t failed = 0;
    PyObject *last_encode = NULL, *last_data = NULL; /* owned */
    /* The list may not change under us (the caller made it), but hold it anyway. */
    Py_INCREF(sinks);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(sinks); i++) {
        prefetch_ahead(sinks, i, PyList_GET_SIZE(sinks), fast_type, &fields);
        PyObject *sink = PyList_GET_ITEM(sinks, i);
        Py_INCREF(sink);
        int outcome;
        PyObject *line = (PyObject *)Py_TYPE(sink) == fast_type ? direct_line(sink, &fields) : NULL;
        PyObject *data = NULL;
        if (line != NULL) {
            PyObject *encode = get_field(sink, &fields.encode);
            if (encode == NULL) {
                /* the slow path meets the same */
            } else if (encode == last_encode) {
                data = Py_NewRef(last_data);
                Py_DECREF(encode);
            } else {
                data = PyObject_CallMethodOneArg(batch, s_encoded, encode);
                if (data == NULL || !PyBytes_Check(data)) {
                    /* Let Python meet the same error (or odd type) on the slow path. */
                    PyErr_Clear();
                    Py_CLEAR(data);
                    Py_DECREF(encode);
                } else {
                    Py_XSETREF(last_encode, encode);
                    Py_XSETREF(last_data, Py_NewRef(data));
                }
            }
        }
        if (data == NULL) {
            Py_XDECREF(line);
            PyObject *call[2] = {sink, batch};
            outcome = call_counting(slow, call, 2);
        } else {
            Py_DECREF(line);
            int fd = -1;
            PyObject *fd_object = get_field(sink, &fields.fd);
            if (fd_object != NULL) {
                long value = PyLong_Check(fd_object) ? PyLong_AsLong(fd_object) : -1;
                if (value == -1 && PyErr_Occurred())
                    PyErr_Clear();
                fd = value < 0 || value > INT_MAX ? -1 : (int)value;
                Py_DECREF(fd_object);
            }
            Py_ssize_t size = PyBytes_GET_SIZE(data);
            ssize_t sent = send(fd, PyBytes_AS_STRING(data), (size_t)size,
                                MSG_DONTWAIT | MSG_NOSIGNAL);
            if (sent == size) {
                outcome = 0;
            } else {
                PyObject *result = PyLong_FromSsize_t(sent < 0 ? -(Py_ssize_t)errno : sent);
                if (result == NULL) {
                    outcome = -1;
                } else {
                    PyObject *call[3] = {sink, data, result};
                    outcome = call_counting(hand_back, call, 3);
                    Py_DECREF(result);
                }
            }
            Py_DECREF(data);
        }
        Py_DECREF(sink);
        if (outcome < 0) {
            Py_XDECREF(last_encode);
            Py_XDECREF(last_data);
            Py_DECREF(sinks);
            return NULL;
        }
        failed += outcome;
    }
    Py_XDECREF(last_encode);
    Py_XDECREF(last_data);
    Py_DECREF(sinks);
    return PyLong_FromSsize_t(failed);
}

static PyMethodDef fanout_methods[] = {
    {"deliver", (PyCFunction)(void (*)(void))fanout_deliver, METH_FASTCALL,
     "deliver(fast_type, slow, hand_back, sinks, batch) -> failed\n\n"
     "One batch to every sink of a group: direct outboxes of plain TCP transports\n"
     "get one non-blocking send here, every other sink slow(sink, batch)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fanout_module = {
    PyModuleDef_HEAD_INIT, "tantra._fanout",
    "The hub's per-client broadcast loop in C (see tantra.fanout).", -1, fanout_methods,
};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    struct {
        PyObject **slot;
        const char *name;
    } names[] = {
        {&s_direct, "_direct"},
        {&s_line, "_line"},
        {&s_encode, "_encode"},
        {&s_encoded, "encoded"},
        {&s_dataBuffer, "dataBuffer"},
        {&s_tempDataLen, "_tempDataLen"},
        {&s_writeDisconnected, "_writeDisconnected"},
        {&s_fd, "_fd"},
        {&s_connected, "connected"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL) {
            *names[i].slot = PyUnicode_InternFromString(names[i].name);
            if (*names[i].slot == NULL)
                return NULL;
        }
    }
    return PyModule_Create(&fanout_module);
}

/*
 * capsule_client: a minimal Python extension that drives reclnet's post-processing
 * core through the PyCapsule exported by reclnet.runtime.postproc._core -- no linking
 * against the core, only its header (reclnet.runtime.get_include()).
 *
 * Build (what tests/runtime/postproc/test_embedding.py and tests/test_wheel.py do):
 *   cc -shared -fPIC -I<python include> -I<reclnet.runtime.get_include()> \
 *      capsule_client.c -o capsule_client<EXT_SUFFIX>
 *
 * capsule_client.run(scores: bytes, T, C, window, lookahead, threshold)
 *   -> (medians: bytes float32[T*C], events: bytes of rpp_event[n])
 * The whole track is pushed frame by frame (frames 0..T-1) into one track and closed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "reclnet/postproc.h"

static const rpp_api *api_or_raise(void) {
    const rpp_api *api = (const rpp_api *)PyCapsule_Import(RPP_CAPSULE_NAME, 0);
    if (api == NULL) return NULL;
    if (api->version != RPP_API_VERSION || api->struct_size < sizeof(rpp_api)) {
        PyErr_Format(PyExc_RuntimeError, "rpp_api version %u (size %u), need %d (size %zu)",
                     api->version, api->struct_size, RPP_API_VERSION, sizeof(rpp_api));
        return NULL;
    }
    return api;
}

static PyObject *fail(const rpp_api *api, rpp_status st, rpp_bank *bank) {
    api->bank_free(bank);
    PyErr_SetString(PyExc_ValueError, api->status_string(st));
    return NULL;
}

static PyObject *run(PyObject *self, PyObject *args) {
    const char *buf;
    Py_ssize_t size;
    long long T;
    int C, window, lookahead;
    double threshold;
    const rpp_api *api;
    rpp_config cfg;
    rpp_bank *bank = NULL;
    rpp_status st;
    int32_t slot;
    int64_t bound, n, total = 0;
    PyObject *medians, *events;
    (void)self;
    if (!PyArg_ParseTuple(args, "y#Liiid", &buf, &size, &T, &C, &window, &lookahead,
                          &threshold))
        return NULL;
    if (T < 0 || C < 1 || (Py_ssize_t)(T * C * (long long)sizeof(float)) != size) {
        PyErr_SetString(PyExc_ValueError, "scores must hold T*C float32 values");
        return NULL;
    }
    if ((api = api_or_raise()) == NULL) return NULL;

    medians = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(T * C * (long long)sizeof(float)));
    if (medians == NULL) return NULL;
    st = api->causal_median((const float *)buf, T, C, window, lookahead,
                            (float *)PyBytes_AS_STRING(medians));
    if (st != RPP_OK) {
        Py_DECREF(medians);
        return fail(api, st, NULL);
    }

    api->config_init(&cfg, C);
    cfg.window = window;
    cfg.lookahead = lookahead;
    cfg.threshold = cfg.close_threshold = (float)threshold;
    cfg.top_k = 3;
    if ((st = api->bank_new(&cfg, &bank)) != RPP_OK ||
        (st = api->bank_open_track(bank, 77, &slot)) != RPP_OK ||
        (st = api->bank_push_bound(bank, 1, &bound)) != RPP_OK) {
        Py_DECREF(medians);
        return fail(api, st, bank);
    }
    /* at most C events per pushed sample without max_gap, plus C at close */
    events = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)((T + 1) * C * (long long)sizeof(rpp_event)));
    if (events == NULL) {
        Py_DECREF(medians);
        api->bank_free(bank);
        return NULL;
    }
    for (long long f = 0; f < T; f++) {
        rpp_event *ev = (rpp_event *)PyBytes_AS_STRING(events) + total;
        st = api->bank_push(bank, f, 1, &slot, (const float *)buf + f * C, C, ev, bound, &n);
        if (st != RPP_OK) break;
        total += n;
    }
    if (st == RPP_OK) {
        rpp_event *ev = (rpp_event *)PyBytes_AS_STRING(events) + total;
        st = api->bank_close_track(bank, slot, ev, (T + 1) * C - total, &n);
        total += n;
    }
    if (st != RPP_OK) {
        Py_DECREF(medians);
        Py_DECREF(events);
        return fail(api, st, bank);
    }
    api->bank_free(bank);
    if (_PyBytes_Resize(&events, (Py_ssize_t)(total * (int64_t)sizeof(rpp_event))) < 0) {
        Py_DECREF(medians);
        return NULL;
    }
    return Py_BuildValue("(NN)", medians, events);
}

static PyMethodDef methods[] = {
    {"run", run, METH_VARARGS, "median and events of one track via the rpp_api capsule"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "capsule_client", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_capsule_client(void) { return PyModule_Create(&module); }

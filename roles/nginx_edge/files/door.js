// Campaign doors: POST /hooks/<campaign> with a flat JSON object of allowed
// parameters creates one run of the campaign's deployment. The caller chooses
// nothing else: the body sent to Prefect is built here. The campaign data
// (deployment ids, parameters, origins) is generated beside this file.
// nginx adds the CORS headers of every door answer (edge/doors.conf).
import crypto from 'crypto';
import campaigns from 'campaigns.js';

var KEY_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
var UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// The field a Turnstile widget adds to the form: the bot check's token, never a
// flow parameter.
var TOKEN_FIELD = 'cf-turnstile-response';
// siteverify answers that are our problem, not the visitor's.
var VERIFIER_FAULTS = ['missing-input-secret', 'invalid-input-secret', 'internal-error', 'bad-request'];
// C0 and C1 control characters (line breaks included) in any text.
var CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
// A scheme, "www." or a dot directly followed by a top-level-domain-like word
// reads as a link; free-text fields refuse it (they land in our emails).
var LINK = /:\/\/|www\.|[a-z0-9-]\.[a-z]{2,24}(?![a-z0-9-])/i;
// Notion's email property holds at most 200 characters: a longer address could never be
// stored, so the door refuses it (the flow's inputs.MAX_EMAIL_LENGTH; tests/test_repo.py
// keeps the two equal).
var EMAIL_MAX_LENGTH = 200;

function send(r, status, payload) {
    r.headersOut['Content-Type'] = 'application/json';
    r.headersOut['Cache-Control'] = 'no-store';
    r.return(status, JSON.stringify(payload) + '\n');
}

function unavailable(r, status, payload) {
    r.headersOut['Retry-After'] = r.variables.edge_retry_after;
    send(r, status, payload);
}

function validate(campaign, data) {
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
        return {error: 'body must be a JSON object'};
    }
    var keys = Object.keys(data);
    for (var i = 0; i < keys.length; i++) {
        var key = keys[i];
        var value = data[key];
        if (campaign.parameters.indexOf(key) === -1) {
            return {error: 'unknown field', field: key};
        }
        if (value !== null && typeof value === 'object') {
            return {error: 'field must be a string, number, boolean or null', field: key};
        }
        if (typeof value === 'number' && !isFinite(value)) {
            return {error: 'number must be finite', field: key};
        }
        if (typeof value === 'string' && CONTROL.test(value)) {
            return {error: 'control characters are not allowed', field: key};
        }
        if (typeof value === 'string' && campaign.free_text.indexOf(key) !== -1 && LINK.test(value)) {
            return {error: 'links are not allowed', field: key};
        }
        if (key === 'email' && typeof value === 'string' && value.length > EMAIL_MAX_LENGTH) {
            return {error: 'must be at most ' + EMAIL_MAX_LENGTH + ' characters', field: key};
        }
    }
    return null;
}

// The same body with its keys sorted, hashed: a run created for one body is
// tagged with it, so an Idempotency-Key reused with another body is caught.
function bodyTag(data) {
    var sorted = {};
    Object.keys(data).sort().forEach(function (key) {
        sorted[key] = data[key];
    });
    var hash = crypto.createHash('sha256').update(JSON.stringify(sorted)).digest('hex');
    return 'body:' + hash.slice(0, 32);
}

function answer(r, reply, tag) {
    var body = {};
    try {
        body = JSON.parse(reply.responseText);
    } catch (e) {
        // keep the empty object
    }
    if (reply.status === 200 || reply.status === 201) {
        if (typeof body.id !== 'string') {
            r.error('door: Prefect answered ' + reply.status + ' without a run id');
            return send(r, 502, {error: 'unexpected answer from the workflow server'});
        }
        if (!Array.isArray(body.tags) || body.tags.indexOf(tag) === -1) {
            return send(r, 409, {error: 'Idempotency-Key already used with a different body'});
        }
        return send(r, 202, {flow_run_id: body.id});
    }
    if (reply.status === 409) {
        return send(r, 422, {error: 'parameters rejected', detail: body.detail || 'parameters rejected'});
    }
    if (reply.status === 429) {
        return unavailable(r, 429, {error: 'too many requests'});
    }
    if (reply.status === 401 || reply.status === 403 || reply.status === 404) {
        // Not the caller's fault: a rotated password or a stale deployment id.
        r.error('door: Prefect answered ' + reply.status + ' for campaign ' + r.variables.edge_campaign
                + ': check nginx_edge_prefect_auth_string and the deployment id');
        return unavailable(r, 503, {error: 'workflow server unavailable'});
    }
    if (reply.status >= 500) {
        // A 500 is Prefect failing on its side (its database restarting, say): the website
        // sends again with the same key, and Prefect answers that key with at most one run.
        if (reply.status === 500) {
            r.error('door: Prefect answered 500 for campaign ' + r.variables.edge_campaign);
        }
        return unavailable(r, 503, {error: 'workflow server unavailable'});
    }
    r.error('door: Prefect answered ' + reply.status);
    return send(r, 502, {error: 'unexpected answer from the workflow server'});
}

function hook(r) {
    var name = r.variables.edge_campaign;
    if (!Object.prototype.hasOwnProperty.call(campaigns, name)) {
        return send(r, 404, {error: 'no such campaign'});
    }
    var campaign = campaigns[name];
    var origin = r.headersIn['Origin'];

    if (origin !== undefined && campaign.origins.indexOf(origin) === -1) {
        return send(r, 403, {error: 'origin not allowed'});
    }

    if (r.method === 'OPTIONS') {
        if (origin === undefined) {
            return send(r, 403, {error: 'origin not allowed'});
        }
        r.headersOut['Access-Control-Allow-Methods'] = 'POST';
        r.headersOut['Access-Control-Allow-Headers'] = 'Content-Type, Idempotency-Key';
        r.headersOut['Access-Control-Max-Age'] = '600';
        return r.return(204);
    }

    if (r.method !== 'POST') {
        r.headersOut['Allow'] = 'POST, OPTIONS';
        return send(r, 405, {error: 'method not allowed'});
    }

    var type = (r.headersIn['Content-Type'] || '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/json') {
        return send(r, 415, {error: 'Content-Type must be application/json'});
    }

    var data;
    try {
        data = JSON.parse(r.requestText || '');
    } catch (e) {
        return send(r, 400, {error: 'body is not valid JSON'});
    }
    var token;
    if (data !== null && typeof data === 'object' && !Array.isArray(data)
            && Object.prototype.hasOwnProperty.call(data, TOKEN_FIELD)) {
        token = data[TOKEN_FIELD];
        delete data[TOKEN_FIELD];
    }
    var problem = validate(campaign, data);
    if (problem) {
        return send(r, 422, problem);
    }

    var tag = bodyTag(data);
    var run = {
        parameters: data,
        enforce_parameter_schema: true,
        tags: ['hook:' + name, tag]
    };
    var key = r.headersIn['Idempotency-Key'];
    if (key !== undefined) {
        if (!KEY_PATTERN.test(key)) {
            return send(r, 400, {error: 'Idempotency-Key must be 1-128 characters of A-Z a-z 0-9 . _ : -'});
        }
        run.idempotency_key = 'hook:' + name + ':' + key;
    }

    if (!r.variables.edge_turnstile_secret) {
        return create(r, campaign, run, tag);
    }
    if (typeof token !== 'string' || token.length === 0 || token.length > 2048) {
        return send(r, 403, {error: 'bot check failed', 'error-codes': ['missing-input-response']});
    }
    // A retry with the same UUID Idempotency-Key asks again with the same
    // idempotency_key, so Turnstile answers as the first time (a token is single-use).
    var check = {
        secret: r.variables.edge_turnstile_secret,
        response: token,
        remoteip: r.variables.remote_addr
    };
    if (key !== undefined && UUID.test(key)) {
        check.idempotency_key = key;
    }
    r.subrequest('/_edge/siteverify', {method: 'POST', body: JSON.stringify(check)})
        .then(function (reply) {
            var verdict = null;
            try {
                verdict = JSON.parse(reply.responseText);
            } catch (e) {
                // handled below
            }
            var codes = verdict && Array.isArray(verdict['error-codes']) ? verdict['error-codes'] : [];
            var fault = codes.filter(function (code) {
                return VERIFIER_FAULTS.indexOf(code) !== -1;
            });
            if (reply.status !== 200 || !verdict || typeof verdict.success !== 'boolean' || fault.length) {
                r.error('door: Turnstile siteverify answered ' + reply.status + ' ' + JSON.stringify(codes)
                        + ': check nginx_edge_turnstile_secret and nginx_edge_turnstile_verify_url');
                return unavailable(r, 503, {error: 'bot check unavailable'});
            }
            if (!verdict.success) {
                return send(r, 403, {error: 'bot check failed', 'error-codes': codes});
            }
            create(r, campaign, run, tag);
        })
        .catch(function (e) {
            r.error('door: Turnstile subrequest failed: ' + e);
            unavailable(r, 503, {error: 'bot check unavailable'});
        });
}

// Valid requests only: the internal location passes them through the global door
// budget (a separate nginx server) to Prefect.
function create(r, campaign, run, tag) {
    r.subrequest('/_edge/create/' + campaign.deployment_id, {method: 'POST', body: JSON.stringify(run)})
        .then(function (reply) {
            answer(r, reply, tag);
        })
        .catch(function (e) {
            r.error('door: subrequest failed: ' + e);
            unavailable(r, 503, {error: 'workflow server unavailable'});
        });
}

// Rate and connection limits key clients by address; IPv6 clients by their
// /64 (one host usually holds a whole /64).
function client(r) {
    var address = r.variables.remote_addr;
    if (address.indexOf(':') === -1) {
        return address;
    }
    if (address.indexOf('.') !== -1) {
        return address.slice(address.lastIndexOf(':') + 1);
    }
    var halves = address.split('::');
    var head = halves[0] ? halves[0].split(':') : [];
    var tail = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
    while (halves.length > 1 && head.length + tail.length < 8) {
        head.push('0');
    }
    return head.concat(tail).slice(0, 4).map(function (group) {
        return parseInt(group, 16).toString(16);
    }).join(':') + '::/64';
}

export default {hook, client};

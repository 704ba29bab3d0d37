// Custom CAP server for the S/4HANA-like peer.
//  - binds to 127.0.0.1 only (HOST env overrides, PORT env or --port sets the port)
//  - SAP-Gateway-like Basic auth + X-CSRF-Token handling in front of the OData V2 and V4 endpoints
//  - mounts the OData V2 adapter at /sap/opu/odata/sap/<SERVICE>
//  - S/4-like number assignment and a business check for the write handlers
//  - SAP_PEER_ORDERS=N: N sales orders generated at start instead of db/data's 200
'use strict'
const cds = require('@sap/cds')
const express = require('express')
const crypto = require('crypto')
const fs = require('fs')
const os = require('os')
const path = require('path')
const cov2ap = require('@cap-js-community/odata-v2-adapter')
const { generate } = require('./scripts/gen-data')

const HOST = process.env.HOST || '127.0.0.1'
const SID = process.env.SAP_PEER_SID || 'S4H'
const CLIENT = process.env.SAP_PEER_CLIENT || '100'
const SESSION_COOKIE = `SAP_SESSIONID_${SID}_${CLIENT}`
const TOKEN_TTL_MS = 1000 * Number(process.env.SAP_PEER_CSRF_TTL_S || 1800)
const REALM = `SAP NetWeaver Application Server [${SID}/${CLIENT}]`
// The V2 adapter re-sends every V2 request as a V4 request to this same server.
// That internal hop carries this per-process secret, so CSRF is checked once, on the V2 request.
const INTERNAL = crypto.randomBytes(24).toString('hex')
const ODATA_PATHS = ['/sap/opu/odata/', '/odata/v4/']
const MODIFYING = new Set(['POST', 'PUT', 'PATCH', 'MERGE', 'DELETE'])

// sessionId -> { user, token, expires }
const sessions = new Map()
setInterval(() => {
  const now = Date.now()
  for (const [id, s] of sessions) if (s.expires < now) sessions.delete(id)
}, 60000).unref()

// OAuth2 client credentials, as SAP's own token service (XSUAA) issues them
// for a communication user: POST /sap-peer/oauth/token with the client's id
// and secret in Basic auth gives a bearer token that acts as alice.
const OAUTH_CLIENT = 'outpost-client'
const OAUTH_SECRET = 'client-secret'
const OAUTH_TTL_S = 3600
const bearers = new Map() // token -> { user, expires }

function issueToken (req, res) {
  let body = ''
  req.on('data', (c) => { body += c })
  req.on('end', () => {
    const client = checkPair(req.headers.authorization, OAUTH_CLIENT, OAUTH_SECRET)
    const form = new URLSearchParams(body)
    if (!client) return res.status(401).json({ error: 'invalid_client' })
    if (form.get('grant_type') !== 'client_credentials') {
      return res.status(400).json({ error: 'unsupported_grant_type' })
    }
    const token = crypto.randomBytes(24).toString('base64url')
    bearers.set(token, { user: 'alice', expires: Date.now() + OAUTH_TTL_S * 1000 })
    stats.tokens++
    res.json({ access_token: token, token_type: 'bearer', expires_in: OAUTH_TTL_S })
  })
}

// A bearer token's user, or null.
function checkBearer (header) {
  if (!header || !/^bearer /i.test(header)) return null
  const b = bearers.get(header.slice(7).trim())
  return b && b.expires > Date.now() ? b.user : null
}

function checkPair (header, id, pwd) {
  if (!header || !/^basic /i.test(header)) return null
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString()
  return decoded === `${id}:${pwd}` ? id : null
}

function users () {
  return (cds.env.requires.auth && cds.env.requires.auth.users) || {}
}

function checkBasic (header) {
  if (!header || !/^basic /i.test(header)) return null
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString()
  const i = decoded.indexOf(':')
  if (i < 0) return null
  const id = decoded.slice(0, i); const pwd = decoded.slice(i + 1)
  const u = users()[id]
  if (!u || typeof u !== 'object' || u.password !== pwd) return null
  return id
}

function parseCookies (header) {
  const out = {}
  for (const part of (header || '').split(';')) {
    const i = part.indexOf('=')
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim()
  }
  return out
}

function unauthorized (res) {
  res.status(401)
  res.set('WWW-Authenticate', `Basic realm="${REALM}"`)
  res.set('Content-Type', 'text/html; charset=utf-8')
  res.end('<html><head><title>Logon Error Message</title></head><body><h1>401 Unauthorized</h1><p>Logon failed</p></body></html>')
}

function csrfFailed (res) {
  res.status(403)
  res.set('x-csrf-token', 'Required')
  res.set('Content-Type', 'text/plain; charset=utf-8')
  res.end('CSRF token validation failed')
}

// SAP Gateway behaviour:
//  - every request needs valid credentials (401 + WWW-Authenticate otherwise)
//  - GET/HEAD with "X-CSRF-Token: Fetch" returns a token in the x-csrf-token response header
//    and a session cookie (SAP_SESSIONID_<SID>_<CLIENT>) to which the token is bound
//  - POST/PUT/PATCH/MERGE/DELETE (incl. $batch) need that token AND the session cookie,
//    else 403, "x-csrf-token: Required", body "CSRF token validation failed"
// What clients did, for tests and benchmarks: GET /sap-peer/stats.
const stats = { requests: 0, csrfFetches: 0, tokens: 0 }

function gatewayGuard (req, res, next) {
  if (!ODATA_PATHS.some(p => req.path.startsWith(p))) return next()
  if (req.headers['x-sap-peer-internal'] === INTERNAL) return next()
  delete req.headers['x-sap-peer-internal']
  stats.requests++

  let user = checkBasic(req.headers.authorization)
  const bearer = !user && checkBearer(req.headers.authorization)
  if (bearer) {
    // CAP itself takes Basic only: the request goes on as that user.
    user = bearer
    const pwd = users()[user].password
    req.headers.authorization = 'Basic ' + Buffer.from(`${user}:${pwd}`).toString('base64')
  }
  if (!user) return unauthorized(res)

  const cookies = parseCookies(req.headers.cookie)
  const now = Date.now()
  let sid = cookies[SESSION_COOKIE]
  let session = sid && sessions.get(sid)
  if (session && (session.user !== user || session.expires < now)) { sessions.delete(sid); session = null }

  const tokenHeader = req.headers['x-csrf-token']
  const method = req.method.toUpperCase()

  if ((method === 'GET' || method === 'HEAD') && tokenHeader && tokenHeader.toLowerCase() === 'fetch') {
    stats.csrfFetches++
    if (!session) {
      sid = crypto.randomBytes(32).toString('base64url')
      session = { user, token: crypto.randomBytes(18).toString('base64'), expires: now + TOKEN_TTL_MS }
      sessions.set(sid, session)
      res.append('Set-Cookie', `${SESSION_COOKIE}=${sid}; path=/; HttpOnly; SameSite=Lax`)
      res.append('Set-Cookie', `sap-usercontext=sap-client=${CLIENT}; path=/`)
    }
    res.set('x-csrf-token', session.token)
  } else if (MODIFYING.has(method)) {
    if (!session || !tokenHeader || tokenHeader !== session.token) return csrfFailed(res)
  }

  // mark the request so the adapter's internal V2->V4 hop is not checked again
  if (req.path.startsWith('/sap/opu/odata/')) req.headers['x-sap-peer-internal'] = INTERNAL
  next()
}

// ---- S/4-like application logic --------------------------------------------------------

const today = () => new Date().toISOString().slice(0, 10)

// Number ranges as in S/4: numbers only go up, a deleted number is never handed out again.
const lastNumber = {}
async function nextNumber (entity, key, start) {
  let m = start
  for (const row of await SELECT.from(entity).columns(key)) { // numeric max; the keys are strings
    const v = Number(row[key]); if (Number.isSafeInteger(v) && v > m) m = v
  }
  const n = Math.max(m, lastNumber[entity] || start) + 1
  lastNumber[entity] = n
  return String(n)
}

function registerHandlers () {
  const bp = cds.services.API_BUSINESS_PARTNER
  const so = cds.services.API_SALES_ORDER_SRV

  // SAP Gateway answers PUT/PATCH/MERGE on OData V2 with 204 No Content (also inside $batch).
  // CAP answers 200 + entity unless "Prefer: return=minimal"; default that for V2-originated updates.
  for (const srv of [bp, so]) {
    srv.before('UPDATE', '*', (req) => {
      // req._.req is the express request of this (sub-)request; req.http.req would be the $batch envelope
      const x = (req._ && req._.req) || (req.http && req.http.req)
      if (!x || !x.headers || req.headers['x-cds-odata-version'] !== 'v2') return
      if (!/return=/i.test(x.headers.prefer || '')) x.headers.prefer = x.headers.prefer ? x.headers.prefer + ', return=minimal' : 'return=minimal'
    })
  }

  // Duplicate keys: a business error (400) as in S/4, not CAP/SQLite's 500 constraint error.
  // Registered after the number-assignment handlers below (before-handlers run in order).
  const rejectDuplicates = async (req) => {
    const keys = Object.values(req.target.keys || {}).filter(k => !k.isAssociation && !k.virtual)
    if (!keys.length || keys.some(k => req.data[k.name] === undefined || req.data[k.name] === null)) return
    const where = {}; for (const k of keys) where[k.name] = req.data[k.name]
    if (await SELECT.one.from(req.target).columns(keys.map(k => k.name)).where(where)) {
      const id = keys.map(k => req.data[k.name]).join('/')
      req.error({ status: 400, code: 'DUPLICATE_KEY', message: `${req.target.name.split('.').pop()} ${id} already exists` })
    }
  }

  bp.before('CREATE', 'A_BusinessPartner', async (req) => {
    const d = req.data
    if (!d.BusinessPartner) d.BusinessPartner = await nextNumber('s4.BusinessPartners', 'BusinessPartner', 1000000)
    if (!d.BusinessPartnerCategory) d.BusinessPartnerCategory = d.FirstName || d.LastName ? '1' : '2'
    if (!d.BusinessPartnerFullName) {
      d.BusinessPartnerFullName = d.BusinessPartnerCategory === '1'
        ? [d.FirstName, d.LastName].filter(Boolean).join(' ')
        : d.OrganizationBPName1
    }
    if (!d.BusinessPartnerFullName) return req.error({ status: 400, code: 'R11/401', message: 'Enter a name for the business partner' })
    d.CreationDate = d.CreationDate || today()
    d.LastChangeDate = today()
    for (const a of d.to_BusinessPartnerAddress || []) {
      a.BusinessPartner = d.BusinessPartner
      if (!a.AddressID) a.AddressID = await nextNumber('s4.BusinessPartnerAddresses', 'AddressID', 22000)
    }
  })
  bp.before('UPDATE', 'A_BusinessPartner', (req) => { req.data.LastChangeDate = today() })
  bp.before('CREATE', 'A_BusinessPartnerAddress', async (req) => {
    if (!req.data.AddressID) req.data.AddressID = await nextNumber('s4.BusinessPartnerAddresses', 'AddressID', 22000)
  })

  so.before('CREATE', 'A_SalesOrder', async (req) => {
    const d = req.data
    if (!d.SoldToParty) return req.error({ status: 400, code: 'V1/390', message: 'Enter a sold-to party', target: 'SoldToParty' })
    const partner = await SELECT.one.from('s4.BusinessPartners').where({ BusinessPartner: d.SoldToParty })
    if (!partner) return req.error({ status: 400, code: 'V1/302', message: `Sold-to party ${d.SoldToParty} does not exist`, target: 'SoldToParty' })
    if (!d.SalesOrder) d.SalesOrder = await nextNumber('s4.SalesOrders', 'SalesOrder', 5000000)
    d.SalesOrderType = d.SalesOrderType || 'OR'
    d.SalesOrganization = d.SalesOrganization || '1010'
    d.DistributionChannel = d.DistributionChannel || '10'
    d.OrganizationDivision = d.OrganizationDivision || '00'
    d.TransactionCurrency = d.TransactionCurrency || 'EUR'
    d.OverallSDProcessStatus = d.OverallSDProcessStatus || 'A'
    d.CreationDate = d.CreationDate || today()
    let pos = 0; let total = 0
    for (const it of d.to_Item || []) {
      it.SalesOrder = d.SalesOrder
      pos += 10
      if (!it.SalesOrderItem) it.SalesOrderItem = String(pos)
      it.TransactionCurrency = it.TransactionCurrency || d.TransactionCurrency
      total += Number(it.NetAmount || 0)
    }
    if (d.TotalNetAmount === undefined || d.TotalNetAmount === null) d.TotalNetAmount = total.toFixed(3)
  })

  bp.before('CREATE', '*', rejectDuplicates)
  so.before('CREATE', '*', rejectDuplicates)
}

// ---- bootstrap ---------------------------------------------------------------------------

cds.on('bootstrap', (app) => {
  app.get('/healthz', (_req, res) => res.type('text/plain').send('ok'))
  app.get('/sap-peer/stats', (_req, res) => res.json(stats))
  app.post('/sap-peer/oauth/token', issueToken)
  app.post('/sap-peer/reset-sessions', (_req, res) => { sessions.clear(); res.type('text/plain').send('ok') })
  app.use(gatewayGuard)
  app.use(cov2ap()) // OData V2 at /sap/opu/odata/sap/<service> (see cds.cov2ap in package.json)
})

cds.on('served', registerHandlers)

// Registered before the adapter's own 'listening' handler: make its V2->V4 proxy target the
// loopback address we bind to (it would use http://localhost:PORT, which may resolve to ::1).
cds.on('listening', (ev) => {
  const a = ev.server.address()
  if (!process.env.CDS_COV2AP_TARGET && !(cds.env.cov2ap && cds.env.cov2ap.target)) {
    const host = a.family === 'IPv6' ? `[${a.address === '::' ? '::1' : a.address}]` : (a.address === '0.0.0.0' ? '127.0.0.1' : a.address)
    ev.url = `http://${host}:${a.port}`
  }
  console.log(`[sap-peer] listening on http://${a.address}:${a.port} pid=${process.pid} ` +
    `sqlite-driver=${cds.env.requires.db.driver}`)
})

// Server-driven paging (S/4 returns __next / @odata.nextLink when a page is cut):
// SAP_PEER_MAX_PAGE_SIZE=N caps every page at N rows (CAP default: 1000).
if (process.env.SAP_PEER_MAX_PAGE_SIZE) {
  const n = Number(process.env.SAP_PEER_MAX_PAGE_SIZE)
  cds.env.query = { ...cds.env.query, limit: { ...(cds.env.query && cds.env.query.limit), default: n, max: n } }
}

// SQLite driver: sql.js (WASM) by default (package.json), so the install needs no native build
// (npm ci --ignore-scripts). SAP_PEER_SQLITE_DRIVER=better-sqlite3 forces the native one, which
// then must have been built.
if (process.env.SAP_PEER_SQLITE_DRIVER) cds.env.requires.db.driver = process.env.SAP_PEER_SQLITE_DRIVER

// SAP_PEER_ORDERS=N: the seed CSVs are generated at start (same 50 partners, N sales orders; the
// first 200 are db/data's) into a temp dir, and CAP loads those instead of db/data's files of the
// same name. The dir is removed once the data is in the in-memory database.
let seedDir = null
if (process.env.SAP_PEER_ORDERS !== undefined && process.env.SAP_PEER_ORDERS !== '') {
  const n = Number(process.env.SAP_PEER_ORDERS)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`SAP_PEER_ORDERS=${process.env.SAP_PEER_ORDERS}: not a count`)
  seedDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sap-peer-data-'))
  const dropSeedDir = () => { if (seedDir) fs.rmSync(seedDir, { recursive: true, force: true }); seedDir = null }
  process.on('exit', dropSeedDir)
  cds.once('served', dropSeedDir) // cds.server deploys the in-memory db before serving
  const counts = generate(50, n, seedDir)
  console.log(`[sap-peer] generated ${counts['s4-SalesOrders.csv']} sales orders, ` +
    `${counts['s4-SalesOrderItems.csv']} items`)
  const resources = cds.deploy.resources
  cds.deploy.resources = async function (...args) {
    const found = await resources.apply(this, args)
    const out = {}
    for (const [file, entity] of Object.entries(found)) {
      const mine = seedDir && path.join(seedDir, path.basename(file))
      out[mine && fs.existsSync(mine) ? mine : file] = entity
    }
    return out
  }
}

// Bind to loopback only: hand cds.server an express app whose listen() pins the host.
module.exports = (options) => {
  const app = express()
  const listen = app.listen.bind(app)
  app.listen = (port, ...rest) => listen(port, HOST, ...rest)
  return cds.server({ ...options, app })
}

#!/usr/bin/env node
// Deterministic seed data for the S/4HANA-like peer.
// Usage: node scripts/gen-data.js [partners=50] [orders=200] [outdir=db/data]
// Writes OUTDIR/s4-*.csv. Same arguments => byte-identical files; the first
// N orders are the same whatever the order count, so more orders only add rows.
// server.js calls generate() for SAP_PEER_ORDERS.
'use strict'
const fs = require('fs')
const path = require('path')

// mulberry32 PRNG, fixed seed (reset by each generate())
let seed
function rnd () {
  seed |= 0; seed = (seed + 0x6D2B79F5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pick = (a) => a[Math.floor(rnd() * a.length)]
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1))

const firstNames = ['Anna', 'Lukas', 'Marie', 'Jonas', 'Sophie', 'Felix', 'Emma', 'Paul', 'Laura', 'Max', 'Julia', 'Leon', 'Clara', 'Noah', 'Lena']
const lastNames = ['Mueller', 'Schmidt', 'Schneider', 'Fischer', 'Weber', 'Meyer', 'Wagner', 'Becker', 'Hoffmann', 'Schulz', 'Koch', 'Richter']
const orgWords = ['Inlandkunde', 'Domestic', 'Global', 'Nordic', 'Alpine', 'Pacific', 'Atlas', 'Bright', 'Cobalt', 'Delta', 'Evergreen', 'Falcon', 'Granite', 'Harbor']
const orgKinds = ['GmbH', 'AG', 'Inc.', 'Ltd.', 'S.A.', 'KG', 'Corp.', 'B.V.']
const cities = [
  ['Walldorf', '69190', 'DE', '08'], ['Berlin', '10115', 'DE', '11'], ['Hamburg', '20095', 'DE', '02'],
  ['Muenchen', '80331', 'DE', '09'], ['New York', '10001', 'US', 'NY'], ['Palo Alto', '94304', 'US', 'CA'],
  ['Chicago', '60601', 'US', 'IL'], ['Paris', '75001', 'FR', '75'], ['Lyon', '69001', 'FR', '69'],
  ['London', 'EC1A 1BB', 'GB', 'LDN'], ['Zuerich', '8001', 'CH', 'ZH'], ['Wien', '1010', 'AT', '9'],
  ['Madrid', '28001', 'ES', 'MD'], ['Tokyo', '100-0001', 'JP', '13']
]
const streets = ['Dietmar-Hopp-Allee', 'Hauptstrasse', 'Bahnhofstrasse', 'Main Street', 'Market Street', 'Rue de Rivoli', 'High Street', 'Gran Via', 'Ringstrasse']
const materials = [
  ['TG11', 'Trad.Good 11,PD,Reg.Trading', 'PC', 50], ['TG12', 'Trad.Good 12,PD,Reg.Trading', 'PC', 120],
  ['FG126', 'Finished Good 126', 'PC', 310], ['RM13', 'Raw Material 13', 'KG', 12.5],
  ['SG21', 'Semi-finished 21', 'PC', 75], ['SRV_01', 'Service Hours', 'H', 95]
]
const currencies = { DE: 'EUR', FR: 'EUR', AT: 'EUR', ES: 'EUR', US: 'USD', GB: 'GBP', CH: 'CHF', JP: 'JPY' }

// Dates: between 2023-01-01 and 2024-12-31, derived from the PRNG
const DAY = 86400000
const BASE = Date.UTC(2023, 0, 1)
const isoDate = (ms) => new Date(ms).toISOString().slice(0, 10)
const isoTs = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, '.000Z')

function csv (rows, cols) {
  const esc = (v) => {
    if (v === null || v === undefined) return ''
    const s = String(v)
    return /[;"\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s
  }
  return cols.join(';') + '\n' + rows.map(r => cols.map(c => esc(r[c])).join(';')).join('\n') + '\n'
}

// generate(NPARTNERS, NORDERS, OUT): writes the four CSVs into OUT; returns {file: rows}.
function generate (NPARTNERS, NORDERS, out) {
  seed = 0x5A9C0DE
  const partners = []
  const addresses = []
  for (let i = 1; i <= NPARTNERS; i++) {
    const id = String(1000000 + i)
    const person = rnd() < 0.3
    const created = BASE + int(0, 365) * DAY
    const changed = created + int(0, 300) * DAY
    const p = {
      BusinessPartner: id,
      Customer: id,
      Supplier: rnd() < 0.2 ? id : '',
      BusinessPartnerCategory: person ? '1' : '2',
      BusinessPartnerGrouping: person ? 'BP01' : 'BP02',
      IsMarkedForArchiving: rnd() < 0.05 ? 'true' : 'false',
      CreatedByUser: pick(['CB9980000010', 'CC0000000001', 'SAP_WFRT']),
      CreationDate: isoDate(created),
      LastChangeDate: isoDate(changed)
    }
    if (person) {
      p.FirstName = pick(firstNames); p.LastName = pick(lastNames)
      p.BusinessPartnerFullName = p.FirstName + ' ' + p.LastName
      p.OrganizationBPName1 = ''
    } else {
      p.FirstName = ''; p.LastName = ''
      p.OrganizationBPName1 = pick(orgWords) + ' ' + pick(orgWords) + ' ' + pick(orgKinds)
      p.BusinessPartnerFullName = p.OrganizationBPName1
    }
    p.SearchTerm1 = p.BusinessPartnerFullName.toUpperCase().replace(/[^A-Z0-9]/g, '').slice(0, 20)
    partners.push(p)
    const naddr = rnd() < 0.2 ? 2 : 1
    for (let a = 0; a < naddr; a++) {
      const [city, plz, country, region] = pick(cities)
      addresses.push({
        BusinessPartner: id,
        AddressID: String(22000 + i * 10 + a),
        StreetName: pick(streets),
        HouseNumber: String(int(1, 200)),
        PostalCode: plz,
        CityName: city,
        Region: region,
        Country: country,
        Language: country === 'DE' || country === 'AT' || country === 'CH' ? 'DE' : 'EN'
      })
    }
  }
  const countryOf = {}
  for (const a of addresses) if (!countryOf[a.BusinessPartner]) countryOf[a.BusinessPartner] = a.Country

  const orders = []
  const items = []
  for (let i = 1; i <= NORDERS; i++) {
    const so = String(5000000 + i)
    const bp = partners[int(0, partners.length - 1)].BusinessPartner
    const cur = currencies[countryOf[bp]] || 'EUR'
    const created = BASE + int(0, 729) * DAY
    const changed = created + int(0, 30) * DAY + int(0, 86399) * 1000
    let total = 0
    const nitems = int(1, 5)
    for (let k = 1; k <= nitems; k++) {
      const [mat, text, unit, price] = pick(materials)
      const qty = unit === 'KG' || unit === 'H' ? int(1, 400) / 4 : int(1, 40)
      const net = Math.round(qty * price * 100) / 100
      total += net
      items.push({
        SalesOrder: so,
        SalesOrderItem: String(k * 10),
        Material: mat,
        SalesOrderItemText: text,
        RequestedQuantity: qty.toFixed(3),
        RequestedQuantityUnit: unit,
        NetAmount: net.toFixed(3),
        TransactionCurrency: cur
      })
    }
    orders.push({
      SalesOrder: so,
      SalesOrderType: 'OR',
      SalesOrganization: pick(['1010', '1710']),
      DistributionChannel: '10',
      OrganizationDivision: '00',
      SoldToParty: bp,
      PurchaseOrderByCustomer: 'PO-' + (700000 + int(0, 99999)),
      TotalNetAmount: (Math.round(total * 100) / 100).toFixed(3),
      TransactionCurrency: cur,
      OverallSDProcessStatus: pick(['A', 'A', 'B', 'C', 'C']),
      CreatedByUser: pick(['CB9980000010', 'CC0000000001']),
      CreationDate: isoDate(created),
      LastChangeDateTime: isoTs(changed)
    })
  }

  fs.mkdirSync(out, { recursive: true })
  const counts = {}
  const write = (name, rows, cols) => {
    fs.writeFileSync(path.join(out, name), csv(rows, cols))
    counts[name] = rows.length
  }
  write('s4-BusinessPartners.csv', partners, ['BusinessPartner', 'Customer', 'Supplier', 'BusinessPartnerCategory', 'BusinessPartnerFullName', 'BusinessPartnerGrouping', 'FirstName', 'LastName', 'OrganizationBPName1', 'SearchTerm1', 'IsMarkedForArchiving', 'CreatedByUser', 'CreationDate', 'LastChangeDate'])
  write('s4-BusinessPartnerAddresses.csv', addresses, ['BusinessPartner', 'AddressID', 'StreetName', 'HouseNumber', 'PostalCode', 'CityName', 'Region', 'Country', 'Language'])
  write('s4-SalesOrders.csv', orders, ['SalesOrder', 'SalesOrderType', 'SalesOrganization', 'DistributionChannel', 'OrganizationDivision', 'SoldToParty', 'PurchaseOrderByCustomer', 'TotalNetAmount', 'TransactionCurrency', 'OverallSDProcessStatus', 'CreatedByUser', 'CreationDate', 'LastChangeDateTime'])
  write('s4-SalesOrderItems.csv', items, ['SalesOrder', 'SalesOrderItem', 'Material', 'SalesOrderItemText', 'RequestedQuantity', 'RequestedQuantityUnit', 'NetAmount', 'TransactionCurrency'])
  return counts
}

module.exports = { generate }

if (require.main === module) {
  const counts = generate(parseInt(process.argv[2] || '50', 10), parseInt(process.argv[3] || '200', 10),
    process.argv[4] || path.join(__dirname, '..', 'db', 'data'))
  for (const [name, n] of Object.entries(counts)) console.log(`${name}: ${n} rows`)
}

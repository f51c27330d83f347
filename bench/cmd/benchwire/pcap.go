package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// The classic pcap file format, as tcpdump -w writes it: a 24-byte file header, then per
// packet a 16-byte record header and the captured bytes. Only what benchwire needs is read:
// TCP over IPv4 or IPv6 on the link types a Linux capture of the loopback device or of "any"
// has.

// Link types (LINKTYPE_*).
const (
	linkEthernet = 1   // lo is captured as Ethernet, with zero addresses
	linkSLL      = 113 // Linux "cooked" capture (-i any)
	linkSLL2     = 276
)

// maxSnap bounds a record's captured length, as libpcap bounds it.
const maxSnap = 256 << 10

// readPcap reads a capture and calls seg for every TCP segment that carries a payload, with
// its time since the first packet, its ports and the captured part of the payload.
func readPcap(r io.Reader, seg func(at time.Duration, src, dst uint16, payload []byte)) error {
	var fh [24]byte
	if _, err := io.ReadFull(r, fh[:]); err != nil {
		return fmt.Errorf("pcap file header: %w", err)
	}
	var order binary.ByteOrder
	nano := false
	switch m := binary.LittleEndian.Uint32(fh[:4]); m {
	case 0xa1b2c3d4:
		order = binary.LittleEndian
	case 0xa1b23c4d:
		order, nano = binary.LittleEndian, true
	case 0xd4c3b2a1:
		order = binary.BigEndian
	case 0x4d3cb2a1:
		order, nano = binary.BigEndian, true
	default:
		return fmt.Errorf("magic %#08x: not a pcap file (pcapng is not read; tcpdump -w writes pcap)", m)
	}
	link := order.Uint32(fh[20:24]) & 0xffff
	if link != linkEthernet && link != linkSLL && link != linkSLL2 {
		return fmt.Errorf("link type %d: want Ethernet (1, the loopback device), Linux SLL (113) or SLL2 (276)", link)
	}
	var rh [16]byte
	buf := make([]byte, 0, 512)
	var first time.Duration
	for i := 0; ; i++ {
		if _, err := io.ReadFull(r, rh[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("packet %d: record header: %w", i+1, err)
		}
		sec, frac := int64(order.Uint32(rh[0:4])), int64(order.Uint32(rh[4:8]))
		caplen := order.Uint32(rh[8:12])
		if caplen > maxSnap {
			return fmt.Errorf("packet %d: captured length %d: more than %d, the file is damaged", i+1, caplen, maxSnap)
		}
		if int(caplen) > cap(buf) {
			buf = make([]byte, caplen)
		}
		buf = buf[:caplen]
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("packet %d: %w", i+1, err)
		}
		if !nano {
			frac *= 1000
		}
		at := time.Duration(sec)*time.Second + time.Duration(frac)
		if i == 0 {
			first = at
		}
		if src, dst, payload, ok := tcpPayload(link, buf); ok {
			seg(at-first, src, dst, payload)
		}
	}
}

// tcpPayload returns a TCP segment's ports and the captured part of its payload, when the
// packet is TCP and has a payload.
func tcpPayload(link uint32, b []byte) (src, dst uint16, payload []byte, ok bool) {
	var proto uint16
	switch link {
	case linkEthernet:
		if len(b) < 14 {
			return 0, 0, nil, false
		}
		proto, b = binary.BigEndian.Uint16(b[12:14]), b[14:]
	case linkSLL:
		if len(b) < 16 {
			return 0, 0, nil, false
		}
		proto, b = binary.BigEndian.Uint16(b[14:16]), b[16:]
	case linkSLL2:
		if len(b) < 20 {
			return 0, 0, nil, false
		}
		proto, b = binary.BigEndian.Uint16(b[0:2]), b[20:]
	}
	var tcpLen int // the TCP header and payload, from the IP header's lengths
	switch proto {
	case 0x0800: // IPv4
		if len(b) < 20 || b[0]>>4 != 4 || b[9] != 6 {
			return 0, 0, nil, false
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || total < ihl || len(b) < ihl {
			return 0, 0, nil, false
		}
		tcpLen, b = total-ihl, b[ihl:]
	case 0x86dd: // IPv6, without extension headers
		if len(b) < 40 || b[0]>>4 != 6 || b[6] != 6 {
			return 0, 0, nil, false
		}
		tcpLen, b = int(binary.BigEndian.Uint16(b[4:6])), b[40:]
	default:
		return 0, 0, nil, false
	}
	if len(b) < 20 {
		return 0, 0, nil, false
	}
	off := int(b[12]>>4) * 4
	if off < 20 || tcpLen <= off || len(b) < off {
		return 0, 0, nil, false // no payload
	}
	return binary.BigEndian.Uint16(b[0:2]), binary.BigEndian.Uint16(b[2:4]), b[off:min(len(b), tcpLen)], true
}

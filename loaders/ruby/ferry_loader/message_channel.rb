# frozen_string_literal: true

# MessageChannel array messages (docs/protocol.md §1.1): u16 big-endian LEN, then LEN bytes, each
# item followed by one NUL. Items cannot contain NUL; LEN is at most 65535.
module FerryLoader
  module MessageChannel
    MAX_PAYLOAD = 65_535

    module_function

    # Returns the wire bytes of an array message made of <items> (to_s of each). Raises
    # ArgumentError for no items, an item holding a NUL, or a payload past MAX_PAYLOAD.
    def encode_array(items)
      raise ArgumentError, 'an array message needs at least one item' if items.empty?

      payload = items.map do |item|
        s = item.to_s.b
        raise ArgumentError, 'array message item contains a NUL byte' if s.include?("\0")

        s + "\0"
      end.join.b
      if payload.bytesize > MAX_PAYLOAD
        raise ArgumentError, "array message payload of #{payload.bytesize} bytes is over #{MAX_PAYLOAD}"
      end

      [payload.bytesize].pack('n') + payload
    end

    # Decodes one complete array message (with its 2-byte prefix) from <wire>. Returns the items,
    # or raises ArgumentError when truncated, empty or not NUL-terminated. Used by the tests and by
    # anything that reads the channel from Ruby.
    def decode_array(wire)
      wire = wire.b
      raise ArgumentError, 'truncated length prefix' if wire.bytesize < 2

      len = wire.unpack1('n')
      raise ArgumentError, 'truncated payload' if wire.bytesize < 2 + len
      raise ArgumentError, 'empty payload' if len.zero?

      payload = wire.byteslice(2, len)
      raise ArgumentError, 'payload does not end in NUL' unless payload.end_with?("\0")

      payload.split("\0", -1)[0...-1]
    end

    # Makes <text> fit in an item: NUL bytes shown as "\\0", cut to <max> bytes (valid UTF-8 kept
    # valid) with a marker when cut.
    def sanitize_item(text, max)
      s = text.to_s.dup.force_encoding(Encoding::UTF_8).scrub.gsub("\0") { '\\0' }
      return s if s.bytesize <= max

      marker = ' [truncated]'
      s.byteslice(0, [max - marker.bytesize, 0].max).scrub('') + marker
    end

    # Writes one array message to <io> in full. Raises the IO's errors (EPIPE when the peer left).
    def write_array(io, items)
      wire = encode_array(items)
      written = 0
      written += io.write(wire.byteslice(written..)) while written < wire.bytesize
      written
    end
  end
end

# frozen_string_literal: true

require 'socket'
require 'securerandom'

# The worker's listening socket: the Linux abstract namespace (no file, nothing stale after a
# crash), or a socket file (mode 0600) when FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS=1 or the abstract
# bind fails. Addresses are written as in the spawn handshake: "abstract:NAME" or "unix:PATH".
module FerryLoader
  class ListenSocket
    BACKLOG = 50
    SUN_PATH_MAX = 107

    attr_reader :socket, :address, :path

    # <env> is the process environment (a Hash). Binds and listens; raises SystemCallError or
    # ArgumentError (path too long) when it cannot.
    def initialize(env = ENV)
      @path = nil
      name = "ferry-rack-#{Process.pid}-#{SecureRandom.hex(8)}"
      if env['FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS'] == '1'
        listen_file(env, name)
      else
        begin
          listen_abstract(name)
        rescue SystemCallError => e
          Log.warn("abstract socket unavailable (#{e.message}); using a socket file", step: 'listen')
          listen_file(env, name)
        end
      end
    end

    def listen_abstract(name)
      sock = Socket.new(:UNIX, :STREAM)
      begin
        sock.bind(Socket.sockaddr_un("\0#{name}"))
        sock.listen(BACKLOG)
      rescue StandardError
        sock.close
        raise
      end
      @socket = sock
      @address = "abstract:#{name}"
    end

    def listen_file(env, name)
      dir = [env['FERRY_INSTANCE_DIR'], env['TMPDIR'], '/tmp'].find { |d| d && !d.empty? }
      path = File.join(dir, "#{name}.sock")
      if path.bytesize > SUN_PATH_MAX
        raise ArgumentError, "socket path #{path} is longer than #{SUN_PATH_MAX} bytes"
      end

      sock = Socket.new(:UNIX, :STREAM)
      old_umask = File.umask(0o177)
      bound = false
      begin
        @path = path # set before bind: an exit right after bind still removes the file
        sock.bind(Socket.sockaddr_un(path))
        bound = true
        File.chmod(0o600, path)
        sock.listen(BACKLOG)
      rescue StandardError
        sock.close
        bound ? remove_file : @path = nil
        raise
      ensure
        File.umask(old_umask)
      end
      @socket = sock
      @address = "unix:#{path}"
    end

    # Removes the socket file, if there is one. Safe to call more than once, from a trap or from
    # another thread.
    def remove_file
      File.unlink(@path) if @path
    rescue SystemCallError
      nil
    end

    def close
      @socket&.close unless @socket&.closed?
    rescue IOError
      nil
    ensure
      remove_file
    end
  end
end

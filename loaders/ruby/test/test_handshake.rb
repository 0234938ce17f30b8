# frozen_string_literal: true

# The spawn handshake: ["ready", pid, address, secret, "2"] or ["error", summary, details] +
# exit 1; the loader without its extension.
require_relative 'helper'

class HandshakeTest < Minitest::Test
  include LoaderTest::Support

  def boot_failure(app_root, **opts)
    w = start(app_root, **opts)
    assert_equal 'error', w.message&.first, "expected an error message, got #{w.message.inspect}"
    assert_equal 3, w.message.size
    status = w.wait(5)
    assert status, 'the loader did not exit after its error message'
    assert_equal 1, status.exitstatus
    w
  end

  def test_ready_names_the_pid_an_abstract_address_and_a_32_hex_secret
    w = main_app
    assert_equal 5, w.message.size
    assert_equal '2', w.message[4] # session protocol v2 offered (docs/protocol.md §4.1)
    assert_equal w.pid.to_s, w.message[1]
    assert_match(/\Aabstract:ferry\.ferry-worker\.#{w.pid}\.\h{16}\z/, w.address)
    assert_match(/\A\h{32}\z/, w.secret)
    assert_equal w.secret.downcase, w.secret
  end

  def test_each_worker_gets_a_different_secret
    refute_equal main_app.secret, main_app.secret
  end

  def test_socket_file_in_the_instance_dir_when_abstract_sockets_are_off
    dir = Dir.mktmpdir('ferry-inst-')
    w = main_app(env: { 'FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS' => '1', 'FERRY_INSTANCE_DIR' => dir })
    path = w.address.delete_prefix('unix:')
    assert w.address.start_with?('unix:')
    assert_equal dir, File.dirname(path)
    assert File.socket?(path)
    assert_equal 0o600, File.stat(path).mode & 0o777
    assert_equal 200, w.request('GET', '/hello').status
    w.kill('USR1')
    assert_equal 0, w.wait(5)&.exitstatus
    refute File.exist?(path), 'the socket file was left behind'
  ensure
    FileUtils.rm_rf(dir) if dir
  end

  def test_socket_file_falls_back_to_tmpdir_without_an_instance_dir
    w = main_app(env: { 'FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS' => '1' })
    assert_equal w.dir, File.dirname(w.address.delete_prefix('unix:'))
  end

  def test_a_socket_path_too_long_is_a_boot_error
    long = File.join(Dir.mktmpdir('ferry-long-'), 'd' * 100)
    FileUtils.mkdir_p(long)
    w = boot_failure(File.join(LoaderTest::APPS, 'main'),
                     env: { 'FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS' => '1', 'FERRY_INSTANCE_DIR' => long })
    assert_match(/\Acannot listen on a worker socket in .*: File name too long\z/, w.message[1])
  ensure
    FileUtils.rm_rf(File.dirname(long)) if long
  end

  def test_syntax_error_names_the_file_and_line
    w = boot_failure(File.join(LoaderTest::APPS, 'syntax_error'))
    assert_match(/\ASyntaxError in config.ru: line 3: syntax error/, w.message[1])
    assert_includes w.message[2], 'SyntaxError'
    assert_match(/\[error\] rack: .*step=load_app: SyntaxError in config.ru/, w.stderr)
  end

  def test_config_ru_without_run_says_so
    w = boot_failure(File.join(LoaderTest::APPS, 'no_entry_point'))
    assert_equal 'config.ru does not call `run`', w.message[1]
    assert_includes w.message[2], 'rack/builder.rb'
  end

  def test_missing_dependency_names_the_missing_file
    w = boot_failure(File.join(LoaderTest::APPS, 'missing_dependency'))
    assert_equal 'LoadError while loading config.ru: cannot load such file -- nonexistent_gem', w.message[1]
    assert_includes w.message[2], 'config.ru:2'
  end

  def test_a_missing_config_ru_is_a_boot_error
    dir = Dir.mktmpdir('ferry-empty-')
    w = boot_failure(dir)
    assert_equal "config.ru not found in #{File.realpath(dir)}", w.message[1]
  ensure
    FileUtils.rm_rf(dir) if dir
  end

  def test_an_unset_app_root_is_a_boot_error
    assert_equal 'FERRY_APP_ROOT is not set', boot_failure('').message[1]
  end

  def test_an_app_root_that_is_not_a_directory_is_a_boot_error
    assert_equal 'FERRY_APP_ROOT /nonexistent/app is not a directory',
                 boot_failure('/nonexistent/app').message[1]
  end

  def test_an_exception_while_loading_is_a_boot_error
    dir = Dir.mktmpdir('ferry-raise-')
    File.write(File.join(dir, 'config.ru'), "raise ArgumentError, 'bad config'\nrun ->(e) { [200, {}, []] }\n")
    w = boot_failure(dir)
    assert_equal 'ArgumentError while loading config.ru: bad config', w.message[1]
  ensure
    FileUtils.rm_rf(dir) if dir
  end

  def test_exit_in_config_ru_is_a_boot_error
    dir = Dir.mktmpdir('ferry-exit-')
    File.write(File.join(dir, 'config.ru'), "exit 0\n")
    assert_equal 'config.ru called exit (status 0)', boot_failure(dir).message[1]
  ensure
    FileUtils.rm_rf(dir) if dir
  end

  def test_a_huge_error_message_still_fits_in_one_array_message
    dir = Dir.mktmpdir('ferry-huge-')
    File.write(File.join(dir, 'config.ru'), "raise 'x' * 200_000 + \"\\0nul\"\n")
    w = boot_failure(dir)
    assert_operator w.message[1].bytesize, :<=, 4096
    assert w.message[1].end_with?('[truncated]')
  ensure
    FileUtils.rm_rf(dir) if dir
  end

  def test_a_closed_owner_fd_is_a_boot_error
    w = start(File.join(LoaderTest::APPS, 'main'), env: { 'FERRY_OWNER_FD' => '99' })
    assert_equal 'error', w.message[0]
    assert_match(/\AFERRY_OWNER_FD=99 and FERRY_CONTROL_FD=4 must be open file descriptors/, w.message[1])
    assert_equal 1, w.wait(5)&.exitstatus
  end

  def test_without_a_control_channel_it_logs_and_exits_1
    w = start(File.join(LoaderTest::APPS, 'main'), env: { 'FERRY_CONTROL_FD' => '98' })
    assert_nil w.message
    assert_equal 1, w.wait(5)&.exitstatus
    assert_match(/\[error\] worker: .*step=boot: FERRY_OWNER_FD=3 and FERRY_CONTROL_FD=98 must be open/, w.stderr)
  end

  def test_app_root_is_cwd_and_on_the_load_path_and_fd_variables_are_cleared
    w = start(File.join(__dir__, 'apps/misc'))
    assert w.ready?, w.stderr
    assert_equal "loaded from the app root\n", w.request('GET', '/helper').body
    assert_equal File.join(__dir__, 'apps/misc'), w.request('GET', '/cwd').body
    assert_equal 'production', w.request('GET', '/rack-env').body
    assert_equal '', w.request('GET', '/ferry-fd-vars').body
  end

  def test_the_hello_rack_example_serves_its_greeting
    w = start(File.join(LoaderTest::REPO, 'examples/hello-rack'))
    assert w.ready?, w.stderr
    assert_match(/\Ahello from ferry \(Ruby #{Regexp.escape(RUBY_VERSION)}, Rack [\d.]+\) at \/\n\z/,
                 w.request('GET', '/').body)
  end

  def test_without_the_extension_it_says_why_on_stderr_and_exits_1
    dir = Dir.mktmpdir('ferry-noext-')
    w = start(File.join(LoaderTest::APPS, 'main'), env: { 'FERRY_EXT_DIR' => dir }, handshake: false)
    assert_equal 1, w.wait(10)&.exitstatus
    assert_match(%r{\Aferry rack loader: cannot load the ferry_ext extension with #{Regexp.escape(RbConfig.ruby)} \(Ruby #{Regexp.escape(RUBY_VERSION)}\): LoadError: no ferry_ext extension \(ferry_ext.so\) in #{Regexp.escape(dir)}/ruby\n\z}, w.stderr)
  ensure
    FileUtils.rm_rf(dir) if dir
  end
end

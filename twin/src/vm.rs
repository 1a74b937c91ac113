//! One twin VM: qemu with Debian's kernel and the twin's initramfs, a
//! virtio disk that outlives it, a tap on the underlay, its console in a
//! file and its command channel on a second serial port.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::{
    channel::{Channel, Reply},
    images::Images,
};

/// How qemu runs guests here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// KVM when /dev/kvm really runs a guest (on some machines it exists
    /// and hangs), else TCG; `TWIN_ACCEL=kvm|tcg` decides instead.
    pub fn detect(images: &Images) -> Accel {
        static FOUND: OnceLock<Accel> = OnceLock::new();
        *FOUND.get_or_init(|| match std::env::var("TWIN_ACCEL").as_deref() {
            Ok("kvm") => Accel::Kvm,
            Ok("tcg") => Accel::Tcg,
            _ if kvm_runs_a_guest(images) => Accel::Kvm,
            _ => Accel::Tcg,
        })
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Accel::Kvm => &["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => &["-accel", "tcg,thread=multi", "-cpu", "max"],
        }
    }
}

/// Boots the kernel without an initramfs under KVM: a working KVM gets as
/// far as the root-mount panic within seconds (and exits: -no-reboot).
fn kvm_runs_a_guest(images: &Images) -> bool {
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    // The console goes to a file: a pipe nobody reads could stall qemu.
    let Ok(console) = tempfile::NamedTempFile::new() else {
        return false;
    };
    let Ok(mut child) = Command::new("qemu-system-x86_64")
        .args(["-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults"])
        .args(["-display", "none", "-no-reboot", "-serial"])
        .arg(format!("file:{}", console.path().display()))
        .arg("-kernel")
        .arg(&images.kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let exited = loop {
        match child.try_wait() {
            Ok(Some(_)) => break true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => break false,
        }
    };
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        return false;
    }
    fs::read_to_string(console.path()).is_ok_and(|text| text.contains("Linux version"))
}

/// What a VM is, across its boots.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub name: String,
    pub server: bool,
    /// On the underlay, with prefix (`192.0.2.11/24`).
    pub underlay: String,
    pub mac: String,
    pub tap: String,
    pub netns: String,
    pub memory_mib: u32,
}

#[derive(Debug)]
pub struct Vm {
    pub config: VmConfig,
    pub disk: PathBuf,
    dir: PathBuf,
    images: Images,
    accel: Accel,
    qemu: Option<Child>,
    channel: Option<Channel>,
    boots: u32,
}

impl Vm {
    /// A VM with a blank disk of `disk_mib` (storaged formats it).
    pub fn new(config: VmConfig, dir: &Path, images: &Images, disk_mib: u64) -> Self {
        let disk = dir.join(format!("{}.disk", config.name));
        let file = fs::File::create(&disk).unwrap_or_else(|e| panic!("twin: disk image: {e}"));
        file.set_len(disk_mib * 1024 * 1024)
            .unwrap_or_else(|e| panic!("twin: disk image: {e}"));
        Self {
            accel: Accel::detect(images),
            config,
            disk,
            dir: dir.to_owned(),
            images: images.clone(),
            qemu: None,
            channel: None,
            boots: 0,
        }
    }

    pub fn console_log(&self) -> PathBuf {
        self.dir
            .join(format!("{}.console.{}", self.config.name, self.boots))
    }

    fn socket(&self) -> PathBuf {
        self.dir.join(format!("{}.cmd", self.config.name))
    }

    /// Starts qemu (power on); [`Vm::wait_booted`] waits for the guest.
    pub fn power_on(&mut self) {
        assert!(self.qemu.is_none(), "{} is already on", self.config.name);
        self.boots += 1;
        let _ = fs::remove_file(self.socket());
        let c = &self.config;
        let append = format!(
            "console=ttyS0 panic=-1 quiet twin.name={} twin.ip={} twin.role={}",
            c.name,
            c.underlay,
            if c.server { "server" } else { "agent" }
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &c.netns, "qemu-system-x86_64"])
            .args([
                "-name",
                &c.name,
                "-nodefaults",
                "-display",
                "none",
                "-no-reboot",
            ])
            .args(self.accel.args())
            .args(["-smp", "1", "-m", &c.memory_mib.to_string()])
            .arg("-kernel")
            .arg(&self.images.kernel)
            .arg("-initrd")
            .arg(&self.images.initramfs)
            .args(["-append", &append])
            .arg("-serial")
            .arg(format!("file:{}", self.console_log().display()))
            .arg("-chardev")
            .arg(format!(
                "socket,id=cmd,path={},server=on,wait=off",
                self.socket().display()
            ))
            .args(["-serial", "chardev:cmd"])
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,cache=writeback",
                self.disk.display()
            ))
            .arg("-netdev")
            .arg(format!(
                "tap,id=net0,ifname={},script=no,downscript=no",
                c.tap
            ))
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=net0,mac={}", c.mac))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                fs::File::create(self.dir.join(format!("{}.qemu.{}", c.name, self.boots)))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("twin: cannot start qemu-system-x86_64: {e}"));
        self.qemu = Some(child);
    }

    /// Waits until the guest's command channel answers.
    pub fn wait_booted(&mut self, within: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let deadline = started + within;
        let mut channel = Channel::connect(&self.socket(), within)
            .map_err(|e| format!("{}: qemu's command socket: {e}", self.config.name))?;
        loop {
            if let Some(qemu) = self.qemu.as_mut()
                && let Ok(Some(status)) = qemu.try_wait()
            {
                return Err(format!(
                    "{}: qemu exited ({status}) during boot; console:\n{}",
                    self.config.name,
                    self.console()
                ));
            }
            if channel
                .call("true", b"", Duration::from_secs(1))
                .is_some_and(|r| r.ok())
            {
                self.channel = Some(channel);
                return Ok(started.elapsed());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{}: did not boot within {within:?}; console:\n{}",
                    self.config.name,
                    self.console()
                ));
            }
        }
    }

    /// The console of the current boot (the kernel's and init's output).
    pub fn console(&self) -> String {
        let text = fs::read_to_string(self.console_log()).unwrap_or_default();
        let start = text.len().saturating_sub(6000);
        text[text.floor_char_boundary(start)..].to_owned()
    }

    /// Runs a shell command in the VM.
    pub fn sh_with(&mut self, command: &str, stdin: &[u8], timeout: Duration) -> Reply {
        let name = self.config.name.clone();
        let channel = self
            .channel
            .as_mut()
            .unwrap_or_else(|| panic!("{name} is not booted"));
        channel
            .call(command, stdin, timeout)
            .unwrap_or_else(|| panic!("{name}: no reply to {command:?} within {timeout:?}"))
    }

    /// Runs a shell command that must succeed; its stdout.
    pub fn sh(&mut self, command: &str) -> String {
        let reply = self.sh_with(command, b"", Duration::from_secs(60));
        assert!(
            reply.ok(),
            "{}: {command:?} exited {}: {}{}",
            self.config.name,
            reply.code,
            reply.stdout,
            reply.stderr
        );
        reply.stdout
    }

    /// Power loss: qemu is killed, the guest gets no warning.
    pub fn kill(&mut self) {
        self.channel = None;
        if let Some(mut qemu) = self.qemu.take() {
            let _ = qemu.kill();
            let _ = qemu.wait();
        }
    }

    pub fn is_on(&self) -> bool {
        self.qemu.is_some()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

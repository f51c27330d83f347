# One colour's instances of one version: teal's launch hook applies this in the colour's
# workspace (blue or green), its terminate hook destroys it. See ../README.md.
#
# Initialise once, with the S3 backend (the state of both workspaces lives there):
#   terraform -chdir=terraform init -backend-config=bucket=my-tf-state \
#     -backend-config=key=teal/shop.tfstate -backend-config=region=eu-west-1
# Values without a default come from the environment: TF_VAR_subnet_ids, TF_VAR_security_group_id,
# TF_VAR_target_group_arns (run.env in teal.yaml), and -var from launch.sh.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
  backend "s3" {}
}

provider "aws" {}

variable "app" {
  description = "teal's app name (TEAL_APP)."
  type        = string
}

variable "color" {
  description = "The colour: blue or green. Also the workspace's name."
  type        = string
  validation {
    condition     = contains(["blue", "green"], var.color)
    error_message = "The colour must be blue or green."
  }
}

# "version" is a reserved variable name in Terraform.
variable "release" {
  description = "The version teal releases (TEAL_VERSION)."
  type        = string
}

variable "ami_id" {
  description = "The version's AMI (the artifact's content); destroy passes a placeholder."
  type        = string
}

variable "instances" {
  description = "How many instances (run.instances)."
  type        = number
  default     = 2
}

variable "instance_type" {
  type    = string
  default = "t3.small"
}

variable "app_port" {
  type    = number
  default = 8080
}

variable "subnet_ids" {
  description = "Subnets to spread the instances over, one per availability zone."
  type        = list(string)
}

variable "security_group_id" {
  description = "Lets the load balancers and teal reach app_port."
  type        = string
}

variable "target_group_arns" {
  description = "The target group behind each colour's load balancer: { blue = arn, green = arn }."
  type        = map(string)
}

resource "aws_instance" "app" {
  count                  = var.instances
  ami                    = var.ami_id
  instance_type          = var.instance_type
  subnet_id              = var.subnet_ids[count.index % length(var.subnet_ids)]
  vpc_security_group_ids = [var.security_group_id]
  user_data              = <<-EOT
    #!/bin/sh
    cat >/etc/default/${var.app} <<EOF
    TEAL_COLOR=${var.color}
    TEAL_VERSION=${var.release}
    PORT=${var.app_port}
    EOF
  EOT

  tags = {
    Name           = "${var.app}-${var.color}-${var.release}"
    "teal:app"     = var.app
    "teal:color"   = var.color
    "teal:version" = var.release
  }
}

resource "aws_lb_target_group_attachment" "app" {
  count            = var.instances
  target_group_arn = var.target_group_arns[var.color]
  target_id        = aws_instance.app[count.index].id
  port             = var.app_port
}

# What launch.sh prints for teal, as it is.
output "instances" {
  value = [for i in aws_instance.app : { addr = "${i.private_ip}:${var.app_port}", id = i.id }]
}

# For launch.sh's wait until the load balancer has the instances in service.
output "target_group_arn" {
  value = var.target_group_arns[var.color]
}

output "targets" {
  value = join(" ", [for i in aws_instance.app : "Id=${i.id},Port=${var.app_port}"])
}

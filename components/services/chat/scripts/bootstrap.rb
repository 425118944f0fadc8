email = ENV.fetch("BOOTSTRAP_ADMIN_EMAIL").downcase
user = User.find_by(email: email)
if user
  puts "Chat: #{email} exists, left as it is"
else
  user = I18n.with_locale(ENV.fetch("DEFAULT_LOCALE")) do
    AccountBuilder.new(
      account_name: ENV.fetch("BOOTSTRAP_ACCOUNT_NAME"),
      user_full_name: ENV.fetch("BOOTSTRAP_ADMIN_NAME"),
      email: email,
      user_password: ENV.fetch("BOOTSTRAP_ADMIN_PASSWORD"),
      super_admin: true,
      confirmed: true
    ).perform.first
  end
  puts "Chat: created super admin #{email} and its account"
end
site = ENV.fetch("BOOTSTRAP_WEBSITE_URL", "")
unless site.empty?
  # Provisioned once per site: the marker row (ours, in Chatwoot's installation_configs) remembers it, so an
  # inbox the admin deleted stays deleted when a version change runs this again.
  marker = InstallationConfig.find_or_initialize_by(name: "VERSATILEHUB_WEBSITE_INBOX")
  if marker.value == site
    puts "Chat: website inbox for #{site} was provisioned before, left as the admin keeps it"
  else
    account = user.accounts.order(:id).first
    abort "Chat: #{email} belongs to no account, so the website inbox has nowhere to go" unless account
    inbox = account.inboxes.where(channel_type: "Channel::WebWidget").find { |i| i.channel.website_url == site }
    inbox ||= ActiveRecord::Base.transaction do
      widget = Channel::WebWidget.create!(account: account, website_url: site)
      account.inboxes.create!(name: ENV.fetch("BOOTSTRAP_WEBSITE_NAME"), channel: widget)
    end
    InboxMember.find_or_create_by!(inbox: inbox, user: user)
    marker.value = site
    marker.locked = true
    marker.save!
    puts "Chat: website inbox for #{site} ready"
  end
end
# Sign-up is governed by the ENABLE_ACCOUNT_SIGNUP row that db:chatwoot_prepare seeds from
# config/installation_config.yml (false, editable in the super admin console): GlobalConfigService.load reads
# that row first and the environment only when the row is missing. Assert it, whatever the env says.
signup = InstallationConfig.find_or_initialize_by(name: "ENABLE_ACCOUNT_SIGNUP")
if signup.new_record? || ActiveModel::Type::Boolean.new.cast(signup.value) != false
  signup.value = false
  signup.locked = false if signup.new_record?
  signup.save!
  GlobalConfig.clear_cache
  puts "Chat: account sign-up closed (installation setting ENABLE_ACCOUNT_SIGNUP)"
end
Redis::Alfred.delete(Redis::Alfred::CHATWOOT_INSTALLATION_ONBOARDING)

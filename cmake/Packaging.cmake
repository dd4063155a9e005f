# Installed files beyond the binaries, and the .deb built by `cpack -G DEB`
# (run from the build directory). Configure with -DCMAKE_INSTALL_PREFIX=/usr
# for a package.

install(FILES ${PROJECT_SOURCE_DIR}/man/impalemail-milter.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${PROJECT_SOURCE_DIR}/man/impalemail.yaml.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
if(EXISTS ${PROJECT_SOURCE_DIR}/man/impalectl.1)
  install(FILES ${PROJECT_SOURCE_DIR}/man/impalectl.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endif()
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/docs/architecture.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/contrib/postfix ${PROJECT_SOURCE_DIR}/contrib/sendmail
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/contrib)
# Absolute paths: the package owns them wherever the prefix is.
install(FILES ${PROJECT_SOURCE_DIR}/contrib/systemd/impalemail-milter.service DESTINATION /lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/contrib/impalemail.yaml DESTINATION /etc/impalemail
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME impalemail)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "ImpaleMail maintainers <root@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "disposable mail aliases decided at SMTP time (milter for Postfix and Sendmail)")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION mail)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "redis-server, postfix | sendmail-bin")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/debian/postinst
    ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
